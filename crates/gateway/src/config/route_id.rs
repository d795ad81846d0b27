//! [`RouteId`]: a route's identity, `provider/upstream-model`, built once when the config is
//! loaded and shared (a reference count, no copy) by routing, attempts, the meter and the served
//! headers; the text is only read at the edges (headers, logs, health reports, the ledger).

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

/// `provider/upstream-model`: the provider's name, the first `/`, and the model's name there
/// (which may hold further `/`s).
#[derive(Clone)]
pub struct RouteId {
    text: Arc<str>,
    /// Where the first `/` is.
    slash: usize,
}

impl RouteId {
    /// The route to `upstream_model` at `provider` (a name without `/`).
    pub fn new(provider: &str, upstream_model: &str) -> RouteId {
        RouteId {
            text: format!("{provider}/{upstream_model}").into(),
            slash: provider.len(),
        }
    }

    /// A route as the config names it: `(provider, upstream model)`, split at the first `/`.
    pub fn split(text: &str) -> Result<(&str, &str), String> {
        text.split_once('/')
            .ok_or_else(|| format!("route \"{text}\" must be provider/model"))
    }

    pub fn provider(&self) -> &str {
        &self.text[..self.slash]
    }

    pub fn upstream_model(&self) -> &str {
        &self.text[self.slash + 1..]
    }

    /// `provider/upstream-model`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for RouteId {
    type Err = String;

    fn from_str(text: &str) -> Result<RouteId, String> {
        let (provider, _) = RouteId::split(text)?;
        Ok(RouteId {
            text: text.into(),
            slash: provider.len(),
        })
    }
}

impl fmt::Display for RouteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for RouteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

/// Equal, hashed and ordered as its text (so a map keyed by `RouteId` is looked up by `&str`).
impl PartialEq for RouteId {
    fn eq(&self, other: &RouteId) -> bool {
        Arc::ptr_eq(&self.text, &other.text) || self.text == other.text
    }
}

impl Eq for RouteId {}

impl PartialEq<str> for RouteId {
    fn eq(&self, other: &str) -> bool {
        &*self.text == other
    }
}

impl PartialEq<&str> for RouteId {
    fn eq(&self, other: &&str) -> bool {
        &*self.text == *other
    }
}

impl Hash for RouteId {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h);
    }
}

impl PartialOrd for RouteId {
    fn partial_cmp(&self, other: &RouteId) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RouteId {
    fn cmp(&self, other: &RouteId) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Borrow<str> for RouteId {
    fn borrow(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_route_parses_displays_and_splits_at_its_first_slash() {
        for text in ["openai/gpt-4o", "router/meta-llama/llama-3-70b", "p/"] {
            let id: RouteId = text.parse().unwrap();
            assert_eq!(id.to_string(), text);
            assert_eq!(id.as_str(), text);
            let (provider, model) = text.split_once('/').unwrap();
            assert_eq!((id.provider(), id.upstream_model()), (provider, model));
            assert_eq!(id, RouteId::new(provider, model));
            assert_eq!(format!("{id:?}"), format!("{text:?}"));
        }
        let id = RouteId::new("openai", "gpt-4o");
        let mut health = HashMap::new();
        health.insert(id.clone(), 1);
        assert_eq!(health.get("openai/gpt-4o"), Some(&1));
        assert_eq!(id, "openai/gpt-4o");
        assert_ne!(id, RouteId::new("openai", "gpt-4o-mini"));
    }

    #[test]
    fn a_route_without_a_slash_is_refused_in_the_words_the_config_error_uses() {
        assert_eq!(
            "gpt-4o".parse::<RouteId>().unwrap_err(),
            "route \"gpt-4o\" must be provider/model"
        );
        assert!(RouteId::split("").is_err());
    }
}
