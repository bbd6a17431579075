//! Claiming a campaign-day before publishing it, so that it is published once: the lock that
//! holds across processes (see [`super::lock`]), then the ledger. `targeting run` and the
//! daemon claim through here, so two of them, in any mix, never publish one campaign-day twice.

use std::time::Duration;

use anyhow::Result;
use models::RunDate;
use rand::Rng;

use super::db::Db;
use super::ledger;
use super::lock::Lock;

/// What claiming a campaign-day found.
#[derive(Debug)]
pub enum Claim {
    /// Ours to publish, under this lock. `republish` says it had succeeded already (a forced
    /// run publishes it again).
    Ours { lock: Lock, republish: bool },
    /// Another process holds the campaign-day's lock: it is running it now (or crashed, and its
    /// lease has not run out yet).
    Elsewhere,
    /// It has a succeeded run already.
    Done,
}

/// The lock key of a campaign-day.
pub fn key(campaign_id: &str, date: RunDate) -> String {
    format!("campaign:{campaign_id}:{date}")
}

/// This process, as a lock holder: host, pid and a random suffix.
pub fn holder_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    let suffix: u32 = rand::rng().random_range(0..0x100_0000);
    format!("{host}-{}-{suffix:06x}", std::process::id())
}

/// Claims a campaign-day: takes its lock, then, unless `force`, gives it back when the ledger
/// has a succeeded run for it. Once the lock is ours, rows of it still `running` are the
/// leftovers of a process that stopped: the caller settles them (`pipeline::recover`) before
/// publishing.
pub async fn claim(
    state: &Db,
    campaign_id: &str,
    date: RunDate,
    holder: &str,
    lease: Duration,
    force: bool,
) -> Result<Claim> {
    let Some(lock) = Lock::try_acquire(state, &key(campaign_id, date), holder, lease).await? else {
        return Ok(Claim::Elsewhere);
    };
    let succeeded = ledger::has_succeeded(state, campaign_id, date).await?;
    if succeeded && !force {
        lock.release().await;
        return Ok(Claim::Done);
    }
    Ok(Claim::Ours {
        lock,
        republish: succeeded,
    })
}
