//! Per-key accounts in memory, so that admission never waits for the database: each key's balance,
//! budget and period spend as of its last known row version, plus the holds (reservations) of the
//! requests this process is serving. A hold is taken under the account's `std` mutex, so
//! concurrent requests on one key can never reserve more than the balance; it is released when it
//! is dropped, after the settlement has been written.
//!
//! The database stays the source of truth: every change to a key row bumps its `version`, the
//! settlement returns the new row, and the account only ever moves to a newer version (a refresh
//! that raced with a settlement cannot roll it back). On PostgreSQL, changes made by another
//! process (another instance, the CLI) arrive at once through the change feed (`ledger::changes`);
//! accounts are also re-read every `REFRESH_AFTER`, the fallback while the feed is down.
//!
//! Several instances sharing one PostgreSQL database must share their holds (`instances =
//! "shared"`, `shared_holds.rs`): then a `Hold` is a row in the database instead of a sum in this
//! process, and no instance can admit against money another has reserved. With the default
//! (`single`) every settlement is still debited atomically, so stored balances stay exact, but each
//! instance admits against the balance it last read, so N instances can over-commit a key by the
//! holds the other N-1 took since their last refresh. One instance: never.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

use super::shared_holds::Lease;
use super::{KeyRecord, Nanos};

/// How long an account is trusted before it is re-read in the background.
pub(crate) const REFRESH_AFTER: Duration = Duration::from_secs(2);

/// `REFRESH_AFTER` unless `key_refresh_ms` says otherwise (process-wide).
static REFRESH_AFTER_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(REFRESH_AFTER.as_millis() as u64);

/// Sets how old an account may be before admission re-reads it (`key_refresh_ms`).
pub(crate) fn set_refresh_after(after: Duration) {
    REFRESH_AFTER_MS.store(
        after.as_millis().max(1) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// Why a hold was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldRefused {
    #[error("the balance cannot cover the request")]
    Balance,
    #[error("the key's budget for this period cannot cover the request")]
    Budget,
    /// A quota window (`5h`) is full until `resets_at` (epoch ms).
    #[error("the key's {window} quota is used up")]
    Quota {
        window: String,
        resets_at: Option<i64>,
    },
}

#[derive(Debug)]
struct State {
    key: KeyRecord,
    /// Sum of the open holds of this process.
    reserved: i64,
    /// How many holds are open, and the tokens they hold (for quota windows).
    open: i64,
    reserved_tokens: i64,
    loaded_at: Instant,
    refreshing: bool,
}

/// One key's account.
#[derive(Debug)]
pub struct Account {
    state: Mutex<State>,
}

/// What an account currently shows.
#[derive(Debug, Clone)]
pub struct AccountView {
    pub key: KeyRecord,
    pub reserved: Nanos,
}

impl Account {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the sums half-updated (single statements),
        // so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `amount` (and `tokens`, for quota windows) unless the balance (less the other
    /// open holds), the budget of the period containing `now_ms` or a quota window cannot cover it.
    pub fn try_hold(
        self: &Arc<Self>,
        amount: Nanos,
        tokens: i64,
        now_ms: i64,
    ) -> Result<Hold, HoldRefused> {
        let mut st = self.lock();
        let available = st.key.balance.0.saturating_sub(st.reserved);
        if amount.0 > available {
            return Err(HoldRefused::Balance);
        }
        if let Some(budget) = st.key.budget {
            let spent = st.key.period_spend(now_ms).0;
            if spent.saturating_add(st.reserved).saturating_add(amount.0) > budget.limit.0 {
                return Err(HoldRefused::Budget);
            }
        }
        let held = super::quotas::InFlight {
            nanos: st.reserved,
            requests: st.open,
            tokens: st.reserved_tokens,
        };
        if let Some((window, resets_at)) =
            super::quotas::refusing(&st.key.quotas, now_ms, held, amount.0, tokens)
        {
            return Err(HoldRefused::Quota { window, resets_at });
        }
        st.reserved += amount.0;
        st.open += 1;
        st.reserved_tokens += tokens;
        drop(st);
        Ok(Hold {
            on: HoldOn::Account(self.clone()),
            amount,
            tokens,
        })
    }

    /// Holds `amount` whatever the balance: money already spent that the database has not debited
    /// yet (a settlement waiting in the journal).
    pub fn force_hold(self: &Arc<Self>, amount: Nanos) -> Hold {
        let mut st = self.lock();
        st.reserved += amount.0;
        st.open += 1;
        drop(st);
        Hold {
            on: HoldOn::Account(self.clone()),
            amount,
            tokens: 0,
        }
    }

    /// Moves to `key` if it is newer than what the account holds.
    pub fn apply(&self, key: &KeyRecord) {
        let mut st = self.lock();
        if key.version >= st.key.version {
            st.key = key.clone();
        }
    }

    pub fn view(&self) -> AccountView {
        let st = self.lock();
        AccountView {
            key: st.key.clone(),
            reserved: Nanos(st.reserved),
        }
    }

    /// True once (until `refreshed`) when the account is older than `REFRESH_AFTER`.
    pub(crate) fn claim_refresh(&self) -> bool {
        let mut st = self.lock();
        let after =
            Duration::from_millis(REFRESH_AFTER_MS.load(std::sync::atomic::Ordering::Relaxed));
        if st.refreshing || st.loaded_at.elapsed() < after {
            return false;
        }
        st.refreshing = true;
        true
    }

    pub(crate) fn refreshed(&self, key: Option<&KeyRecord>) {
        if let Some(k) = key {
            self.apply(k);
        }
        let mut st = self.lock();
        st.refreshing = false;
        st.loaded_at = Instant::now();
    }

    fn release(&self, amount: Nanos, tokens: i64) {
        let mut st = self.lock();
        st.reserved = st.reserved.saturating_sub(amount.0).max(0);
        st.open = (st.open - 1).max(0);
        st.reserved_tokens = st.reserved_tokens.saturating_sub(tokens).max(0);
    }
}

/// Money reserved for one request; released when dropped.
#[derive(Debug)]
pub struct Hold {
    on: HoldOn,
    amount: Nanos,
    /// The tokens it holds in the key's quota windows (this process's accounts only).
    tokens: i64,
}

/// Where the money is held.
#[derive(Debug)]
enum HoldOn {
    /// In this process's account of the key.
    Account(Arc<Account>),
    /// A row in the shared `holds` table, which the settlement's transaction deletes.
    Shared(Lease),
}

impl Hold {
    pub(super) fn shared(amount: Nanos, lease: Lease) -> Hold {
        Hold {
            on: HoldOn::Shared(lease),
            amount,
            tokens: 0,
        }
    }

    pub fn amount(&self) -> Nanos {
        self.amount
    }

    /// The same hold, now of `amount` (more or less than before, whatever the balance). A
    /// shared hold keeps its row as it is, for the settlement's replay to release.
    pub fn resize(mut self, amount: Nanos) -> Hold {
        match &mut self.on {
            HoldOn::Account(account) => {
                let held = account.force_hold(amount);
                drop(self);
                held
            }
            HoldOn::Shared(lease) => {
                lease.disarm();
                self
            }
        }
    }

    /// The settlement that was to release this hold was refused (its client got a 503 and it is
    /// never billed): the money is free again, also a shared hold's row.
    pub fn refused(mut self) {
        if let HoldOn::Shared(lease) = &mut self.on {
            lease.rearm();
        }
    }

    /// The settlement was written: a shared hold's row went with it, in the same transaction.
    pub fn settled(mut self) {
        if let HoldOn::Shared(lease) = &mut self.on {
            lease.disarm();
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let HoldOn::Account(account) = &self.on {
            account.release(self.amount, self.tokens);
        }
    }
}

/// The accounts of the keys this process has served.
#[derive(Debug, Default)]
pub struct Accounts {
    map: Mutex<HashMap<String, Arc<Account>>>,
}

impl Accounts {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Account>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key_id: &str) -> Option<Arc<Account>> {
        self.map().get(key_id).cloned()
    }

    /// The account for `key`, created from it if this process has none yet.
    pub fn insert(&self, key: KeyRecord) -> Arc<Account> {
        let mut map = self.map();
        if let Some(a) = map.get(&key.id) {
            let a = a.clone();
            drop(map);
            a.apply(&key);
            return a;
        }
        let id = key.id.clone();
        let account = Arc::new(Account {
            state: Mutex::new(State {
                key,
                reserved: 0,
                open: 0,
                reserved_tokens: 0,
                loaded_at: Instant::now(),
                refreshing: false,
            }),
        });
        map.insert(id, account.clone());
        account
    }

    /// Applies a changed key row to its account, if this process has one.
    pub fn apply(&self, key: &KeyRecord) {
        if let Some(a) = self.get(&key.id) {
            a.apply(key);
        }
    }
}
