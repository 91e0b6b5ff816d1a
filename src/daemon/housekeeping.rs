//! Housekeeping on a timer: retention pruning in short batches (each its own store
//! write, so the API's inserts interleave with it in the writer's group commits) and a
//! passive WAL checkpoint.

use crate::clock::Clock;
use crate::config::RetentionConfig;
use crate::store::{Pruned, Store};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// Between two housekeeping passes (the first runs at start).
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Rows of each kind one pruning write deletes at most: a few milliseconds of writer
/// time, so a backlog never holds up an API insert for long.
pub const BATCH: usize = 200;

/// Runs until the task is aborted. `retention` may change (a reload); the next pass
/// uses the new periods. `passes` counts finished passes (tests wait on it).
pub async fn run(
    store: Store,
    retention: watch::Receiver<RetentionConfig>,
    clock: Clock,
    passes: watch::Sender<u64>,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let cut = retention.borrow().cutoffs(clock.now_ms());
        match prune(&store, cut).await {
            Ok(p) if p.total() > 0 => info!(
                messages = p.messages,
                unmatched_reports = p.unmatched_reports,
                inbox = p.inbox,
                events = p.events,
                idempotency = p.idempotency,
                otps = p.otps,
                "retention: pruned"
            ),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "retention: pruning stopped; next pass in a minute"),
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.checkpoint()).await {
            Ok(Ok(c)) if c.busy => info!(
                frames = c.log_frames,
                "WAL checkpoint held back by a reader"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "WAL checkpoint failed"),
            Err(e) => warn!(error = %e, "WAL checkpoint task failed"),
        }
        passes.send_modify(|n| *n += 1);
    }
}

/// Prunes batch after batch until one comes back short.
pub async fn prune(store: &Store, cut: crate::store::Cutoffs) -> crate::store::Result<Pruned> {
    let mut total = Pruned::default();
    loop {
        let p = store
            .write(move |c| crate::store::prune_batch(c, &cut, BATCH))
            .await?;
        total.add(p);
        let full = [
            p.messages,
            p.unmatched_reports,
            p.inbox,
            p.events,
            p.idempotency,
            p.otps,
        ]
        .iter()
        .any(|&n| n >= BATCH);
        if !full {
            return Ok(total);
        }
        // Let queued API writes have the writer before the next batch.
        tokio::task::yield_now().await;
    }
}
