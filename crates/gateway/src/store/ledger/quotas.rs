//! Coding-plan quotas: a key carries any number of windows (`5h`, `7d`, `30d`, …), each capping
//! money, requests or tokens. A window starts with the first request after the previous one
//! ended, as the vendors' 5-hour windows do, and what it has used is kept on the key's row
//! (`api_keys.quotas`, JSON), updated in the settlement's transaction. Admission holds against
//! every window: what the window used, plus what the requests in flight hold, plus this request's
//! worst case must fit (`Quota::admits`); a refusal names the window and when it frees.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::Nanos;

/// One window of a key's quotas and what it has used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub window_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_nanos: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<i64>,
    /// When the current window started (epoch ms); `None` before its first request.
    #[serde(default)]
    pub started_at: Option<i64>,
    #[serde(default)]
    pub used_nanos: i64,
    #[serde(default)]
    pub used_requests: i64,
    #[serde(default)]
    pub used_tokens: i64,
}

/// What is held for a key's requests in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InFlight {
    pub nanos: i64,
    pub requests: i64,
    pub tokens: i64,
}

impl Quota {
    /// Whether the window that started last is still open at `now`.
    fn open_at(&self, now: i64) -> bool {
        self.started_at
            .is_some_and(|s| s.saturating_add(self.window_ms) > now)
    }

    /// What the open window has used at `now` (nothing once it ended): money, requests, tokens.
    pub fn used(&self, now: i64) -> (i64, i64, i64) {
        if self.open_at(now) {
            (self.used_nanos, self.used_requests, self.used_tokens)
        } else {
            (0, 0, 0)
        }
    }

    /// When the open window ends; `None` when none is open.
    pub fn resets_at(&self, now: i64) -> Option<i64> {
        self.open_at(now)
            .then(|| self.started_at.unwrap_or(now) + self.window_ms)
    }

    /// Whether one more request holding `amount` and `tokens` fits, with `held` in flight.
    pub fn admits(&self, now: i64, held: InFlight, amount: i64, tokens: i64) -> bool {
        let (nanos, requests, used_tokens) = self.used(now);
        let fits = |limit: Option<i64>, used: i64, held: i64, more: i64| {
            limit.is_none_or(|l| used.saturating_add(held).saturating_add(more) <= l)
        };
        fits(self.usd_nanos, nanos, held.nanos, amount)
            && fits(self.requests, requests, held.requests, 1)
            && fits(self.tokens, used_tokens, held.tokens, tokens)
    }

    /// Counts a settled request that started at `at`: it opens a new window when none is open.
    pub fn charge(&mut self, at: i64, cost: i64, tokens: i64) {
        if !self.open_at(at) {
            self.started_at = Some(at);
            (self.used_nanos, self.used_requests, self.used_tokens) = (0, 0, 0);
        }
        self.used_nanos = self.used_nanos.saturating_add(cost.max(0));
        self.used_requests = self.used_requests.saturating_add(1);
        self.used_tokens = self.used_tokens.saturating_add(tokens.max(0));
    }

    /// The window's name: `5h`, `7d`, `90m`.
    pub fn name(&self) -> String {
        window_name(self.window_ms)
    }

    /// The window as `GET /v1/key` and the admin API show it.
    pub fn to_json(&self, now: i64) -> Value {
        let (nanos, requests, tokens) = self.used(now);
        json!({
            "window": self.name(),
            "usd": self.usd_nanos.map(|n| Nanos(n).to_string()),
            "requests": self.requests,
            "tokens": self.tokens,
            "used": {"usd": Nanos(nanos).to_string(), "requests": requests, "tokens": tokens},
            "resets_at": self.resets_at(now),
        })
    }
}

fn window_name(ms: i64) -> String {
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000)] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{}m", ms / 60_000)
}

/// `5h`, `7d`, `1w`, `90m` in milliseconds (1 minute to 366 days).
fn parse_window(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let size = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => {
            return Err(format!(
                "window '{s}': expected a number and m, h, d or w (e.g. 5h, 7d)"
            ))
        }
    };
    let n: i64 = n
        .parse()
        .map_err(|_| format!("window '{s}': expected a number and m, h, d or w (e.g. 5h, 7d)"))?;
    let ms = n.saturating_mul(size);
    if !(60_000..=366 * 86_400_000).contains(&ms) {
        return Err(format!("window '{s}' must be from 1 minute to 366 days"));
    }
    Ok(ms)
}

/// One window's limits from `usd`, `requests` and `tokens` values.
fn window(
    window: &str,
    usd: Option<&str>,
    requests: Option<i64>,
    tokens: Option<i64>,
) -> Result<Quota, String> {
    let window_ms = parse_window(window)?;
    let usd_nanos = match usd {
        None => None,
        Some(u) => Some(
            super::parse_usd(u, super::AmountRule::Positive)
                .map_err(|e| format!("window '{window}': usd '{u}': {e}"))?
                .0,
        ),
    };
    for (what, v) in [("requests", requests), ("tokens", tokens)] {
        if v.is_some_and(|n| n < 1) {
            return Err(format!("window '{window}': {what} must be at least 1"));
        }
    }
    if usd_nanos.is_none() && requests.is_none() && tokens.is_none() {
        return Err(format!(
            "window '{window}' caps nothing: give usd, requests or tokens"
        ));
    }
    Ok(Quota {
        window_ms,
        usd_nanos,
        requests,
        tokens,
        started_at: None,
        used_nanos: 0,
        used_requests: 0,
        used_tokens: 0,
    })
}

/// The `api_keys.quotas` column: `NULL` without windows.
pub fn to_column(quotas: &[Quota]) -> Option<String> {
    (!quotas.is_empty()).then(|| serde_json::to_string(quotas).unwrap_or_else(|_| "[]".into()))
}

/// The most windows a key may carry.
pub const MAX_QUOTAS: usize = 8;

/// `5h:usd=2,7d:requests=2000` (windows separated by commas, each `WINDOW:LIMIT=VALUE[:…]`,
/// limits `usd`, `requests`, `tokens`), as the CLI's `--quota` and the console give them.
pub fn parse_spec(spec: &str) -> Result<Vec<Quota>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut fields = part.split(':');
        let name = fields.next().unwrap_or_default();
        let (mut usd, mut requests, mut tokens) = (None, None, None);
        for f in fields {
            let (k, v) = f.split_once('=').ok_or_else(|| {
                format!("'{f}' in '{part}': expected usd=…, requests=… or tokens=…")
            })?;
            let int = |v: &str| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("'{f}' in '{part}': expected a whole number"))
            };
            match k.trim() {
                "usd" => usd = Some(v.trim()),
                "requests" => requests = Some(int(v)?),
                "tokens" => tokens = Some(int(v)?),
                other => {
                    return Err(format!(
                        "'{other}' in '{part}': expected usd, requests or tokens"
                    ))
                }
            }
        }
        out.push(window(name, usd, requests, tokens)?);
    }
    checked(out)
}

/// The admin API's `quotas`: an array of `{"window": "5h", "usd": "2.00", "requests": 100,
/// "tokens": 1000000}`, or the same as a `parse_spec` string.
pub fn parse_json(v: &Value) -> Result<Vec<Quota>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => parse_spec(s),
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                let name = item
                    .get("window")
                    .and_then(Value::as_str)
                    .ok_or("each quota needs a 'window' such as \"5h\"")?;
                let usd = match item.get("usd") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    Some(_) => {
                        return Err(format!("window '{name}': usd must be a decimal string"))
                    }
                };
                let int = |k: &str| match item.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => v
                        .as_i64()
                        .map(Some)
                        .ok_or(format!("window '{name}': {k} must be a whole number")),
                };
                out.push(window(
                    name,
                    usd.as_deref(),
                    int("requests")?,
                    int("tokens")?,
                )?);
            }
            checked(out)
        }
        _ => Err(
            "'quotas' must be an array of windows or a string like \"5h:usd=2,7d:requests=2000\""
                .into(),
        ),
    }
}

fn checked(out: Vec<Quota>) -> Result<Vec<Quota>, String> {
    if out.len() > MAX_QUOTAS {
        return Err(format!("a key carries at most {MAX_QUOTAS} quota windows"));
    }
    Ok(out)
}

/// New limits for a key that had `old`: a window of the same length keeps what it has used.
pub fn carry_usage(new: &mut [Quota], old: &[Quota]) {
    for q in new.iter_mut() {
        if let Some(o) = old.iter().find(|o| o.window_ms == q.window_ms) {
            q.started_at = o.started_at;
            (q.used_nanos, q.used_requests, q.used_tokens) =
                (o.used_nanos, o.used_requests, o.used_tokens);
        }
    }
}

/// The first window of `quotas` that cannot take one more request, with when it frees.
pub fn refusing(
    quotas: &[Quota],
    now: i64,
    held: InFlight,
    amount: i64,
    tokens: i64,
) -> Option<(String, Option<i64>)> {
    quotas
        .iter()
        .find(|q| !q.admits(now, held, amount, tokens))
        .map(|q| (q.name(), q.resets_at(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_open_with_the_first_request_and_hold_in_flight_requests() {
        let q = parse_spec("5h:usd=2,7d:requests=3:tokens=100").unwrap();
        assert_eq!(
            (q[0].window_ms, q[0].usd_nanos),
            (5 * 3_600_000, Some(2_000_000_000))
        );
        assert_eq!(
            (q[1].name(), q[1].requests, q[1].tokens),
            ("7d".into(), Some(3), Some(100))
        );
        assert_eq!(
            parse_json(&json!([{"window": "5h", "usd": "2"}])).unwrap()[0],
            q[0]
        );
        for bad in [
            "5x:usd=1",
            "5h",
            "5h:usd=0",
            "5h:requests=0",
            "5h:foo=1",
            "0h:usd=1",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
        let mut w = q[1].clone();
        let held = InFlight {
            nanos: 0,
            requests: 1,
            tokens: 10,
        };
        assert!(w.admits(1_000, held, 0, 10));
        w.charge(1_000, 5, 40);
        w.charge(2_000, 5, 40);
        assert_eq!(w.used(2_000), (10, 2, 80));
        // One more request is the third: with one in flight it is the fourth.
        assert!(w.admits(3_000, InFlight::default(), 0, 20));
        assert!(!w.admits(3_000, held, 0, 10));
        assert_eq!(w.resets_at(3_000), Some(1_000 + 7 * 86_400_000));
        // The window ended: the next request opens a new one.
        let later = 1_000 + 7 * 86_400_000;
        assert_eq!(w.used(later), (0, 0, 0));
        w.charge(later + 5, 1, 1);
        assert_eq!(
            (w.started_at, w.used(later + 5)),
            (Some(later + 5), (1, 1, 1))
        );
    }
}
