//! API keys: generating them, hashing them for storage, and turning a presented bearer token into
//! the `Caller` a request runs as, without the database on the hot path.
//!
//! Every key (revoked ones included) is held in memory by its hash, loaded at startup. Changes
//! made through this process (the admin API) replace the key's entry at once; changes made by
//! another process (the CLI, another instance) on PostgreSQL arrive at once through the ledger's
//! change feed (`ledger::changes`), and in any case through a background refresh every
//! `REFRESH_EVERY` (the fallback while the feed is down, and SQLite's only way), which lists
//! each key's row `version` and reads in full only the rows that changed. An entry only ever moves to a newer version, so a refresh that raced with an admin
//! change cannot roll it back. A revoked key is refused as invalid; an expired one as expired.
//!
//! A token that is not in the map may be a key another process created since the last refresh,
//! so it is looked up once in the database; but unknown tokens are remembered in a bounded set
//! of their own (a flood of them can never evict a valid key), and at most `MAX_MISS_LOOKUPS`
//! lookups run at once: past that, an unknown token is refused at once rather than queued, so a
//! flood cannot take the pool's connections away from the ledger's writes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Semaphore};

use crate::store::ledger::{now_ms, KeyChange, KeyRecord, Ledger, LedgerError, NewKey};

pub use crate::store::ledger::KEY_PREFIX;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

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

/// Base 62 in ASCII order, so that ids compare as their times do.
const ORDERED: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A new request id, `req_` and 24 characters: the time in milliseconds (8 characters of base 62,
/// in ASCII order, good for 6,900 years) and 16 random ones (95 bits). Ids made later sort later,
/// so the ledger's primary-key index grows at its end: a batch of entries dirties a page or two of
/// it instead of one page per entry.
pub fn new_request_id() -> String {
    request_id_at(now_ms())
}

/// A request id made at `ms` (epoch milliseconds).
fn request_id_at(ms: i64) -> String {
    let mut id = String::with_capacity(28);
    id.push_str("req_");
    let mut t = u64::try_from(ms).unwrap_or(0);
    let mut time = [b'0'; 8];
    for c in time.iter_mut().rev() {
        *c = ORDERED[(t % 62) as usize];
        t /= 62;
    }
    id.extend(time.iter().map(|&c| c as char));
    let mut rng = rand::thread_rng();
    id.extend((0..16).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char));
    id
}

/// Creates a key, stores its hash and returns the record with the key itself, shown only once.
pub async fn create_key(ledger: &Ledger, new: &NewKey) -> Result<(KeyRecord, String), LedgerError> {
    let key = format!("{KEY_PREFIX}{}", random_string(32));
    let id = new_id("key_", 16);
    let prefix = format!("{}…", &key[..KEY_PREFIX.len() + 4]);
    let record = ledger
        .insert_key(&id, &hash_key(&key), &prefix, &key[key.len() - 4..], new)
        .await?;
    Ok((record, key))
}

/// The key a request runs as. Its `balance` and spend are as of its last refresh: money is
/// decided by the key's account (`ledger::accounts`), never by this copy.
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

/// How often changes made by other processes are picked up without the change feed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(3);

/// `REFRESH_EVERY` unless `key_refresh_ms` says otherwise (process-wide, set before keys load).
static REFRESH_EVERY_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(REFRESH_EVERY.as_millis() as u64);

/// Sets how often the keys are re-read without a change feed (`key_refresh_ms`).
pub(crate) fn set_refresh_every(every: Duration) {
    REFRESH_EVERY_MS.store(
        every.as_millis().max(1) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}
/// Database lookups of unknown tokens allowed at once; the pool has 4 (SQLite) or 16 connections.
pub const MAX_MISS_LOOKUPS: usize = 2;
/// Unknown tokens remembered; when full, the set starts over (it holds no valid key).
const MAX_UNKNOWN: usize = 10_000;

/// A key's SHA-256, raw.
type Hash = [u8; 32];

fn digest(token: &str) -> Hash {
    Sha256::digest(token.as_bytes()).into()
}

/// A key as found, unless it is revoked or has expired.
fn live(caller: Caller) -> Result<Caller, AuthError> {
    if caller.revoked_at.is_some() {
        return Err(AuthError::Invalid);
    }
    if caller.is_expired(now_ms()) {
        return Err(AuthError::Expired);
    }
    Ok(caller)
}

/// The keys this process knows, by hash and by id.
#[derive(Default)]
struct Known {
    by_hash: HashMap<Hash, Caller>,
    hash_of: HashMap<String, Hash>,
}

impl Known {
    /// Takes `key` unless the entry already holds a newer version of it.
    fn adopt(&mut self, hash: Hash, key: KeyRecord) {
        if let Some(cur) = self.by_hash.get(&hash) {
            if cur.version > key.version {
                return;
            }
        }
        self.hash_of.insert(key.id.clone(), hash);
        self.by_hash.insert(hash, Arc::new(key));
    }

    fn version_of(&self, id: &str) -> Option<i64> {
        let hash = self.hash_of.get(id)?;
        self.by_hash.get(hash).map(|k| k.version)
    }
}

/// How many times tokens were looked up in the database, and the most lookups that ran at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupStats {
    pub lookups: u64,
    pub peak_concurrent: u64,
}

struct Shared {
    ledger: Ledger,
    known: RwLock<Known>,
    unknown: Mutex<HashSet<Hash>>,
    misses: Semaphore,
    pending: Mutex<HashMap<Hash, LookupOutcome>>,
    lookups: AtomicU64,
    in_flight: AtomicU64,
    peak: AtomicU64,
}

/// Resolves bearer tokens to keys from memory.
pub struct Authenticator {
    shared: Arc<Shared>,
    refresher: tokio::task::AbortHandle,
}

impl Drop for Authenticator {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

fn parse_hash(hex_hash: &str) -> Option<Hash> {
    let mut h = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut h).ok()?;
    Some(h)
}

/// A lookup in progress: `None` until it ends, then `Ok` or the database error it met.
type LookupOutcome = watch::Receiver<Option<Result<(), String>>>;

/// Removes a lookup from the pending ones when it ends (also when its request is dropped).
struct PendingLookup<'a> {
    shared: &'a Shared,
    hash: Hash,
}

impl Drop for PendingLookup<'_> {
    fn drop(&mut self) {
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        pending.remove(&self.hash);
    }
}

/// Counts one database lookup in flight for as long as it lives (also when the request that
/// started it is dropped mid-lookup).
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn enter(in_flight: &'a AtomicU64, peak: &AtomicU64) -> Self {
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        InFlight(in_flight)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Known> {
        // Every write is a single map insert, so a poisoned lock still holds a consistent map.
        self.known.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Known> {
        self.known.write().unwrap_or_else(|p| p.into_inner())
    }

    fn adopt_rows(&self, rows: Vec<(String, KeyRecord)>) {
        let mut known = self.write();
        for (hex_hash, key) in rows {
            if let Some(hash) = parse_hash(&hex_hash) {
                known.adopt(hash, key);
            }
        }
    }

    /// Reads in full the keys whose version differs from the one held (or that are new).
    async fn refresh(&self) -> Result<(), LedgerError> {
        let versions = self.ledger.key_versions().await?;
        let changed: Vec<String> = {
            let known = self.read();
            versions
                .into_iter()
                .filter(|(id, v)| known.version_of(id).is_none_or(|held| held < *v))
                .map(|(id, _)| id)
                .collect()
        };
        if !changed.is_empty() {
            let rows = self.ledger.keys_with_hashes_by_id(&changed).await?;
            self.adopt_rows(rows);
        }
        Ok(())
    }

    /// Looks a token that is not in memory up in the database, if a lookup slot is free.
    async fn look_up(&self, hash: Hash) -> Result<Caller, AuthError> {
        let unknown = || self.unknown.lock().unwrap_or_else(|p| p.into_inner());
        if unknown().contains(&hash) {
            return Err(AuthError::Invalid);
        }
        // Concurrent requests with the same new token share one lookup (e.g. a burst on a key the
        // CLI just created); distinct tokens each need a free slot.
        let role = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            match pending.get(&hash).cloned() {
                Some(rx) => Err(rx),
                None => {
                    let Ok(permit) = self.misses.try_acquire() else {
                        return Err(AuthError::Invalid);
                    };
                    let (tx, rx) = watch::channel(None);
                    pending.insert(hash, rx);
                    Ok((tx, permit))
                }
            }
        };
        let (tx, _permit) = match role {
            Ok(lead) => lead,
            Err(rx) => return self.follow(hash, rx).await,
        };
        let _pending = PendingLookup { shared: self, hash };
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let found = {
            let _counted = InFlight::enter(&self.in_flight, &self.peak);
            self.ledger.key_by_hash(&hex::encode(hash)).await
        };
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                let _ = tx.send(Some(Err(e.to_string())));
                return Err(e.into());
            }
        };
        let result = match found {
            Some(key) => {
                let mut known = self.write();
                known.adopt(hash, key);
                let caller = known
                    .by_hash
                    .get(&hash)
                    .cloned()
                    .ok_or(AuthError::Invalid)?;
                drop(known);
                live(caller)
            }
            None => {
                let mut set = unknown();
                if set.len() >= MAX_UNKNOWN {
                    set.clear();
                }
                set.insert(hash);
                Err(AuthError::Invalid)
            }
        };
        let _ = tx.send(Some(Ok(())));
        result
    }

    /// Waits for another request's lookup of the same token, then answers from what it found.
    async fn follow(&self, hash: Hash, mut rx: LookupOutcome) -> Result<Caller, AuthError> {
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or(Ok(())),
            Err(_) => Ok(()),
        };
        let held = self.read().by_hash.get(&hash).cloned();
        match (held, outcome) {
            (Some(caller), _) => live(caller),
            (None, Err(e)) => Err(AuthError::Ledger(LedgerError::Unavailable(e))),
            (None, Ok(())) => Err(AuthError::Invalid),
        }
    }
}

impl Authenticator {
    /// Loads every key and starts the background refresh, which also follows the ledger's
    /// change feed (it ends when this is dropped).
    pub async fn load(ledger: Ledger) -> Result<Self, LedgerError> {
        // Subscribed before loading, so that no change notified after the load is missed.
        let changes = ledger.key_changes();
        let rows = ledger.keys_with_hashes().await?;
        let shared = Arc::new(Shared {
            ledger,
            known: RwLock::new(Known::default()),
            unknown: Mutex::new(HashSet::new()),
            misses: Semaphore::new(MAX_MISS_LOOKUPS),
            pending: Mutex::new(HashMap::new()),
            lookups: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        });
        shared.adopt_rows(rows);
        let weak: Weak<Shared> = Arc::downgrade(&shared);
        let refresher = tokio::spawn(follow(weak, changes)).abort_handle();
        Ok(Authenticator { shared, refresher })
    }

    /// The caller for a token (the value after `Bearer `).
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Caller, AuthError> {
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let hash = digest(token);
        let held = self.shared.read().by_hash.get(&hash).cloned();
        match held {
            Some(caller) => live(caller),
            None => self.shared.look_up(hash).await,
        }
    }

    /// Creates a key (see [`create_key`]) and knows it at once.
    pub async fn create_key(&self, new: &NewKey) -> Result<(KeyRecord, String), LedgerError> {
        let (record, key) = create_key(&self.shared.ledger, new).await?;
        self.shared.write().adopt(digest(&key), record.clone());
        Ok((record, key))
    }

    /// Adopts a key's new row after a change made through this process (revoke, top-up, limits),
    /// so that the next request sees it.
    pub fn key_changed(&self, key: &KeyRecord) {
        let mut known = self.shared.write();
        if let Some(hash) = known.hash_of.get(&key.id).copied() {
            known.adopt(hash, key.clone());
        }
    }

    /// Picks up changes made by other processes now, instead of at the next background refresh.
    pub async fn refresh(&self) -> Result<(), LedgerError> {
        self.shared.refresh().await
    }

    /// Database lookups of tokens so far, and the most that ran at once.
    pub fn lookup_stats(&self) -> LookupStats {
        LookupStats {
            lookups: self.shared.lookups.load(Ordering::Relaxed),
            peak_concurrent: self.shared.peak.load(Ordering::SeqCst),
        }
    }
}

/// The background refresh: every `REFRESH_EVERY`, and whenever the change feed says so; rows
/// the feed brings are adopted as they come.
async fn follow(weak: Weak<Shared>, changes: tokio::sync::broadcast::Receiver<KeyChange>) {
    use tokio::sync::broadcast::error::RecvError;
    let mut changes = Some(changes);
    let every = REFRESH_EVERY_MS.load(std::sync::atomic::Ordering::Relaxed);
    let mut tick = tokio::time::interval(Duration::from_millis(every));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let change = tokio::select! {
            _ = tick.tick() => None,
            change = async {
                match changes.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => Some(change),
        };
        let Some(shared) = weak.upgrade() else { break };
        match change {
            Some(Ok(KeyChange::Keys(rows))) => {
                shared.adopt_rows(rows.as_ref().clone());
                continue;
            }
            Some(Err(RecvError::Closed)) => {
                changes = None;
                continue;
            }
            // A tick, a resync, or more changes than the channel kept: read what changed.
            None | Some(Ok(KeyChange::Resync)) | Some(Err(RecvError::Lagged(_))) => {}
        }
        if let Err(e) = shared.refresh().await {
            tracing::warn!(error = %e, "refreshing the keys failed; keeping the ones held");
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

    /// Request ids keep their shape (`req_` and 24 letters or digits) and sort as their times do,
    /// across every digit boundary of the time part (what keeps the ledger's index growing at its end).
    #[test]
    fn request_ids_made_later_sort_later() {
        let now = new_request_id();
        assert_eq!(now.len(), 28, "{now}");
        assert!(now.starts_with("req_") && now[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(new_request_id(), new_request_id());
        let times = (0..4_000i64)
            .chain([61, 62, 3_843, 3_844, 238_327, 238_328])
            .chain((0..2_000).map(|i| 1_765_000_000_000 + i * 977));
        let mut times: Vec<i64> = times.collect();
        times.sort_unstable();
        times.dedup();
        for pair in times.windows(2) {
            let (a, b) = (request_id_at(pair[0]), request_id_at(pair[1]));
            assert!(a[..12] < b[..12], "{} ({a}) !< {} ({b})", pair[0], pair[1]);
        }
    }

    /// A fresh SQLite ledger in a unique temporary file (removed when the guard drops).
    struct TempLedger {
        ledger: Ledger,
        path: std::path::PathBuf,
    }

    impl Drop for TempLedger {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = self.path.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
    }

    async fn temp_ledger() -> TempLedger {
        let path = std::env::temp_dir().join(format!(
            "switchyard-auth-{}-{}.db",
            std::process::id(),
            random_string(12)
        ));
        let ledger = Ledger::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        TempLedger { ledger, path }
    }

    fn named(name: &str) -> NewKey {
        NewKey {
            name: name.into(),
            ..NewKey::default()
        }
    }

    #[tokio::test]
    async fn known_keys_are_answered_without_the_database() {
        let db = temp_ledger().await;
        let (before, key_a) = create_key(&db.ledger, &named("a")).await.unwrap();
        let auth = Authenticator::load(db.ledger.clone()).await.unwrap();
        let (_, key_b) = auth.create_key(&named("b")).await.unwrap();
        db.ledger.close().await;
        assert_eq!(auth.authenticate(Some(&key_a)).await.unwrap().id, before.id);
        assert_eq!(auth.authenticate(Some(&key_b)).await.unwrap().name, "b");
        assert_eq!(auth.lookup_stats().lookups, 0);
        // An unknown token does need the database, which is gone: that is an error, not a 401.
        assert!(matches!(
            auth.authenticate(Some("sk-sy-unknown")).await,
            Err(AuthError::Ledger(_))
        ));
        assert!(matches!(
            auth.authenticate(Some("  ")).await,
            Err(AuthError::Missing)
        ));
    }

    #[tokio::test]
    async fn unknown_tokens_are_looked_up_once_and_never_evict_keys() {
        let db = temp_ledger().await;
        let auth = Authenticator::load(db.ledger.clone()).await.unwrap();
        let (_, key) = auth.create_key(&named("a")).await.unwrap();
        for _ in 0..3 {
            assert!(matches!(
                auth.authenticate(Some("sk-sy-nope")).await,
                Err(AuthError::Invalid)
            ));
        }
        assert_eq!(auth.lookup_stats().lookups, 1);
        // More unknown tokens than the set holds: it starts over, the key stays.
        for i in 0..MAX_UNKNOWN + 10 {
            let _ = auth.authenticate(Some(&format!("sk-sy-flood-{i}"))).await;
        }
        let lookups = auth.lookup_stats().lookups;
        assert!(auth.authenticate(Some(&key)).await.is_ok());
        assert_eq!(auth.lookup_stats().lookups, lookups);
        assert_eq!(auth.lookup_stats().peak_concurrent, 1);
    }

    #[tokio::test]
    async fn a_key_created_elsewhere_is_found_and_kept() {
        let db = temp_ledger().await;
        let auth = Authenticator::load(db.ledger.clone()).await.unwrap();
        // Created by another process (e.g. the CLI): not in memory yet, found by one lookup.
        let (_, key) = create_key(&db.ledger, &named("cli")).await.unwrap();
        assert!(auth.authenticate(Some(&key)).await.is_ok());
        assert!(auth.authenticate(Some(&key)).await.is_ok());
        assert_eq!(auth.lookup_stats().lookups, 1);
    }

    #[tokio::test]
    async fn a_burst_on_a_new_key_shares_one_lookup() {
        let db = temp_ledger().await;
        let auth = Authenticator::load(db.ledger.clone()).await.unwrap();
        let (_, key) = create_key(&db.ledger, &named("cli")).await.unwrap();
        let burst = (0..50).map(|_| auth.authenticate(Some(&key)));
        let results = futures_util::future::join_all(burst).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(auth.lookup_stats().lookups, 1);
    }

    #[tokio::test]
    async fn changes_apply_on_the_next_request_and_never_go_back() {
        let db = temp_ledger().await;
        let auth = Authenticator::load(db.ledger.clone()).await.unwrap();
        let (record, key) = auth.create_key(&named("a")).await.unwrap();
        let update = crate::store::ledger::KeyUpdate {
            rpm: Some(Some(7)),
            ..Default::default()
        };
        let changed = db.ledger.update_key(&record.id, &update).await.unwrap();
        auth.key_changed(&changed);
        assert_eq!(auth.authenticate(Some(&key)).await.unwrap().rpm, Some(7));
        // An older row (a refresh that raced with the change) does not roll it back.
        auth.key_changed(&record);
        assert_eq!(auth.authenticate(Some(&key)).await.unwrap().rpm, Some(7));

        let revoked = db.ledger.revoke_key(&record.id).await.unwrap();
        auth.key_changed(&revoked);
        assert!(matches!(
            auth.authenticate(Some(&key)).await,
            Err(AuthError::Invalid)
        ));
        assert_eq!(auth.lookup_stats().lookups, 0);
    }

    #[tokio::test]
    async fn a_refresh_picks_up_changes_made_by_another_process() {
        let db = temp_ledger().await;
        let auth = Authenticator::load(db.ledger.clone()).await.unwrap();
        let (a, key_a) = auth.create_key(&named("a")).await.unwrap();
        let (b, key_b) = auth.create_key(&named("b")).await.unwrap();
        // Changed behind the authenticator's back, as the CLI or another instance would.
        db.ledger.revoke_key(&a.id).await.unwrap();
        let past = crate::store::ledger::KeyUpdate {
            expires_at: Some(Some(now_ms() - 1_000)),
            ..Default::default()
        };
        db.ledger.update_key(&b.id, &past).await.unwrap();
        assert!(auth.authenticate(Some(&key_a)).await.is_ok());
        auth.refresh().await.unwrap();
        assert!(matches!(
            auth.authenticate(Some(&key_a)).await,
            Err(AuthError::Invalid)
        ));
        assert!(matches!(
            auth.authenticate(Some(&key_b)).await,
            Err(AuthError::Expired)
        ));
        assert_eq!(auth.lookup_stats().lookups, 0);
    }
}
