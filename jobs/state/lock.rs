//! Locks that hold across processes and machines, so that a campaign's run for a date happens
//! in one place only, even with two schedulers running by accident.
//!
//! On PostgreSQL: a session-level advisory lock on a connection of its own; it is released
//! when the connection closes, so a crashed holder releases it at once. On SQLite: a lease row
//! with an expiry, renewed while the holder runs; a crashed holder's lease runs out.

use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use sqlx::Connection as _;
use tracing::warn;

use crate::state::db::Db;

const ADVISORY_LOCK: &str = include_str!("../../sql/statements/advisory_lock.sql");
const ADVISORY_UNLOCK: &str = include_str!("../../sql/statements/advisory_unlock.sql");
const TAKE_LEASE: &str = include_str!("../../sql/statements/take_lease.sql");
const RELEASE_LEASE: &str = include_str!("../../sql/statements/release_lease.sql");

/// A held lock; [`Lock::release`] gives it back (dropping it releases an advisory lock too,
/// and lets a lease expire).
#[derive(Debug)]
pub struct Lock {
    key: String,
    /// `None` once released.
    kind: Option<Kind>,
}

#[derive(Debug)]
enum Kind {
    Advisory(sqlx::PgConnection),
    Lease {
        db: Db,
        holder: String,
        /// Renews the lease until dropped.
        renewer: tokio::task::JoinHandle<()>,
    },
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some(Kind::Lease { renewer, .. }) = &self.kind {
            renewer.abort();
        }
    }
}

/// The advisory lock number of a key: the first 8 bytes of its SHA-256.
fn advisory_key(key: &str) -> i64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

impl Lock {
    /// Tries to take the lock `key` for `holder`, without waiting: `None` when another process
    /// holds it. A lease lasts `lease` and is renewed every third of it.
    pub async fn try_acquire(
        db: &Db,
        key: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Lock>> {
        let context = || format!("cannot take the lock {key:?} in {}", db.display);
        if let Some(mut conn) = db.dedicated_pg_connection().await? {
            let taken: bool = sqlx::query_scalar(ADVISORY_LOCK)
                .bind(advisory_key(key))
                .fetch_one(&mut conn)
                .await
                .with_context(context)?;
            if !taken {
                let _ = conn.close().await;
                return Ok(None);
            }
            return Ok(Some(Lock {
                key: key.into(),
                kind: Some(Kind::Advisory(conn)),
            }));
        }
        if !take_lease(db, key, holder, lease)
            .await
            .with_context(context)?
        {
            return Ok(None);
        }
        let renewer = {
            let (db, key, holder) = (db.clone(), key.to_string(), holder.to_string());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    match take_lease(&db, &key, &holder, lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            warn!(key, "lost the lease to another process");
                            return;
                        }
                        Err(e) => warn!(key, error = %format!("{e:#}"), "cannot renew the lease"),
                    }
                }
            })
        };
        Ok(Some(Lock {
            key: key.into(),
            kind: Some(Kind::Lease {
                db: db.clone(),
                holder: holder.into(),
                renewer,
            }),
        }))
    }

    /// Gives the lock back.
    pub async fn release(mut self) {
        match self.kind.take() {
            // Unlocked first, so that the lock is free when this returns: closing the session
            // would release it too, but only once the server has ended the session.
            Some(Kind::Advisory(mut conn)) => {
                let unlocked = sqlx::query(ADVISORY_UNLOCK)
                    .bind(advisory_key(&self.key))
                    .execute(&mut conn)
                    .await;
                if let Err(e) = unlocked {
                    warn!(key = self.key, error = %e, "cannot unlock; closing the session releases it");
                }
                if let Err(e) = conn.close().await {
                    warn!(key = self.key, error = %e, "cannot close the lock's connection");
                }
            }
            Some(Kind::Lease {
                db,
                holder,
                renewer,
            }) => {
                renewer.abort();
                release_lease(&db, &self.key, &holder).await;
            }
            None => {}
        }
    }
}

async fn take_lease(db: &Db, key: &str, holder: &str, lease: Duration) -> Result<bool> {
    let now = chrono::Utc::now().timestamp();
    let taken = sqlx::query(TAKE_LEASE)
        .bind(key)
        .bind(holder)
        .bind(now + lease.as_secs().max(1) as i64)
        .bind(now)
        .execute(&db.pool)
        .await?;
    Ok(taken.rows_affected() == 1)
}

async fn release_lease(db: &Db, key: &str, holder: &str) {
    if let Err(e) = sqlx::query(RELEASE_LEASE)
        .bind(key)
        .bind(holder)
        .execute(&db.pool)
        .await
    {
        warn!(key, error = %e, "cannot release the lease");
    }
}
