//! The writer thread: takes everything queued, writes it in one
//! transaction, answers the waiting acknowledgements, and on failure keeps
//! the batch and retries with backoff until it succeeds.

use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};

use super::{db, Ack, Msg, NotDurable};
use crate::telemetry::{Metrics, RateLimiter};

/// First retry delay after a failed write; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// At shutdown, how long a failing database is retried before the queued
/// changes are given up (the daemon must be able to stop).
const CLOSE_GRACE: Duration = Duration::from_secs(10);

fn commit(conn: &mut Connection, ops: &[db::Op]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    db::apply(&tx, ops)?;
    tx.commit()
}

/// Runs until the handle is dropped and the queue is written (or, with a
/// failing database, until [`CLOSE_GRACE`] has passed), then checkpoints
/// and closes the file.
pub(super) fn run(mut conn: Connection, rx: mpsc::Receiver<Msg>, metrics: Metrics) {
    let limiter = RateLimiter::default();
    let mut pending: Vec<db::Op> = Vec::new();
    let mut acks: Vec<Ack> = Vec::new();
    let mut backoff = FIRST_BACKOFF;
    let mut failing_since: Option<Instant> = None;
    let mut last_error: Option<NotDurable> = None;
    let mut give_up_at: Option<Instant> = None;
    let mut open = true;
    let take = |m: Msg, pending: &mut Vec<db::Op>, acks: &mut Vec<Ack>| match m {
        Msg::Op(op) => pending.push(op),
        Msg::Sync(a) => acks.push(a),
    };
    loop {
        if pending.is_empty() && acks.is_empty() {
            if !open {
                break;
            }
            match rx.recv() {
                Ok(m) => take(m, &mut pending, &mut acks),
                Err(_) => break,
            }
        } else if failing_since.is_some() {
            // Wait out the backoff, still collecting what arrives, so a
            // flood of bans during an outage is one retry, not one per ban.
            let until = Instant::now() + backoff;
            while open {
                let Some(left) = until.checked_duration_since(Instant::now()) else {
                    break;
                };
                match rx.recv_timeout(left) {
                    Ok(m) => take(m, &mut pending, &mut acks),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
                // Whoever waits for durability learns now that it is not,
                // rather than after the backoff.
                if let Some(e) = &last_error {
                    for a in acks.drain(..) {
                        a(Err(e.clone()));
                    }
                }
            }
            if !open {
                std::thread::sleep(until.saturating_duration_since(Instant::now()));
            }
        }
        while open {
            match rx.try_recv() {
                Ok(m) => take(m, &mut pending, &mut acks),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        let started = Instant::now();
        match commit(&mut conn, &pending) {
            Ok(()) => {
                if let Some(since) = failing_since.take() {
                    tracing::warn!(
                        changes = pending.len(),
                        failing_for_s = since.elapsed().as_secs(),
                        "store: database writes succeed again; the queued changes are committed"
                    );
                }
                tracing::trace!(
                    changes = pending.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "store: committed"
                );
                pending.clear();
                last_error = None;
                for a in acks.drain(..) {
                    a(Ok(()));
                }
                backoff = FIRST_BACKOFF;
            }
            Err(e) => {
                metrics.store_errors.inc();
                let now = Instant::now();
                failing_since.get_or_insert(now);
                if let Some(suppressed) = limiter.check("store_write") {
                    tracing::error!(
                        pending = pending.len(),
                        retry_in_ms = backoff.as_millis() as u64,
                        suppressed,
                        "store: database write failed, bans stay in force and the write is retried: {e}"
                    );
                }
                let nd = NotDurable {
                    reason: e.to_string(),
                };
                for a in acks.drain(..) {
                    a(Err(nd.clone()));
                }
                last_error = Some(nd);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                if !open && now >= *give_up_at.get_or_insert(now + CLOSE_GRACE) {
                    tracing::error!(
                        lost = pending.len(),
                        "store: giving up at shutdown; these changes are not in the database: {e}"
                    );
                    break;
                }
            }
        }
    }
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        tracing::debug!("store: checkpoint at close: {e}");
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!("store: closing the database: {e}");
    }
}
