//! API keys: generating them, hashing them for storage, and turning a presented bearer token into
//! the `Caller` a request runs as. Lookups are cached for a few seconds so that the hot path does
//! not touch the database on every request; changes made through this process (the admin API)
//! clear the cache at once. Revoked keys are not found; expired keys are refused.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rand::Rng;
use sha2::{Digest, Sha256};

use crate::ledger::{now_ms, KeyRecord, Ledger, LedgerError, NewKey};

/// Keys start with this, so that they are recognisable in a leaked file or a secret scanner.
pub const KEY_PREFIX: &str = "sk-sy-";
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// How long a looked-up key is trusted before it is read again (revocations from another
/// process take at most this long to apply; revocations through this process apply at once).
const CACHE_TTL: Duration = Duration::from_secs(5);

/// The hex SHA-256 of a key. Keys carry 190 bits of randomness, so a fast hash is enough.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn random_string(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A new random identifier with a prefix, e.g. `key_…`, `req_…`.
pub fn new_id(prefix: &str, len: usize) -> String {
    format!("{prefix}{}", random_string(len))
}

/// Creates a key, stores its hash and returns the record with the key itself, shown only once.
pub async fn create_key(ledger: &Ledger, new: &NewKey) -> Result<(KeyRecord, String), LedgerError> {
    let key = format!("{KEY_PREFIX}{}", random_string(32));
    let id = new_id("key_", 16);
    let prefix = format!("{}…", &key[..KEY_PREFIX.len() + 4]);
    let record = ledger
        .insert_key(&id, &hash_key(&key), &prefix, new)
        .await?;
    Ok((record, key))
}

/// The key a request runs as.
pub type Caller = Arc<KeyRecord>;

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing API key")]
    Missing,
    #[error("invalid API key")]
    Invalid,
    #[error("expired API key")]
    Expired,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// A found key, unless it has expired.
fn live(found: Option<Caller>) -> Result<Caller, AuthError> {
    let caller = found.ok_or(AuthError::Invalid)?;
    if caller.is_expired(now_ms()) {
        return Err(AuthError::Expired);
    }
    Ok(caller)
}

/// Resolves bearer tokens to keys, with a short-lived cache.
pub struct Authenticator {
    ledger: Ledger,
    cache: RwLock<HashMap<String, (Option<Caller>, Instant)>>,
}

impl Authenticator {
    pub fn new(ledger: Ledger) -> Self {
        Authenticator {
            ledger,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The caller for a token (the value after `Bearer `).
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Caller, AuthError> {
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let hash = hash_key(token);
        if let Some((hit, at)) = self.cache.read().ok().and_then(|c| c.get(&hash).cloned()) {
            if at.elapsed() < CACHE_TTL {
                return live(hit);
            }
        }
        let found = self.ledger.key_by_hash(&hash).await?.map(Arc::new);
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() > 100_000 {
                cache.clear();
            }
            cache.insert(hash, (found.clone(), Instant::now()));
        }
        live(found)
    }

    /// Forgets cached lookups, e.g. after a key was revoked or its balance changed.
    pub fn invalidate(&self) {
        if let Ok(mut cache) = self.cache.write() {
            cache.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_look_like_keys() {
        let id = new_id("key_", 16);
        assert_eq!(id.len(), 20);
        assert_eq!(hash_key("a").len(), 64);
        assert_ne!(random_string(32), random_string(32));
    }
}
