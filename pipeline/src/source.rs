//! Where telemetry comes from, behind one trait (Vector style): Kafka
//! ([`crate::kafka::KafkaSource`]) or an in-process replay of events.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::event::Event;

/// A boxed future, for object-safe async traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a message sits in its source (Kafka partition and offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// One raw message, as read. The payload is a shared, reference-counted
/// slice: a source may put a whole batch in one buffer (one allocation,
/// freed once, rather than one per message on the reader's thread and a
/// free per message on the processor's).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub payload: Bytes,
    pub position: Option<Position>,
    /// The partition's log starts over at this message: the broker lost it
    /// (a broker restarted without its data) or the topic was re-created.
    /// Positions of the partition read before are void: offsets at or
    /// below them are new messages, not redeliveries, and cannot be
    /// committed.
    pub log_restarted: bool,
}

/// A source of telemetry messages. Reading and committing are separate
/// handles so that one task can read ahead while another processes and
/// commits (see [`crate::runner::Pipeline::run`]).
pub trait Source: Send {
    /// Waits for the next messages (at most `max`); `Ok(None)` when a
    /// finite source is exhausted.
    fn next_batch(&mut self, max: usize) -> BoxFuture<'_, Result<Option<Vec<Message>>, String>>;

    /// The handle that commits this source's positions.
    fn committer(&self) -> Arc<dyn Committer>;

    /// Every partition of what this source reads, when it knows (event time
    /// advances only when each has delivered an event: a window of a fleet
    /// whose events spread over all partitions must wait for all of them,
    /// also while a consumer-group rebalance assigns this reader only some);
    /// `None`: all seen.
    fn partitions(&self) -> Option<Vec<i32>> {
        None
    }
}

/// Commits a source's positions.
pub trait Committer: Send + Sync {
    /// Records that everything before `next` (per partition: the offset of
    /// the first message not yet fully processed) has had its effects
    /// persisted, so a restart resumes there.
    /// The broker may acknowledge it later: a commit lost in a crash only
    /// means more is replayed.
    fn commit<'a>(&'a self, next: &'a [Position]) -> BoxFuture<'a, Result<(), String>>;

    /// The same, returning only once the commit is durable (at shutdown).
    fn commit_durably<'a>(&'a self, next: &'a [Position]) -> BoxFuture<'a, Result<(), String>> {
        self.commit(next)
    }
}

/// Replays events in process, in order: as fast as possible, or paced so
/// that `speedup` seconds of event time pass per wall-clock second.
#[derive(Debug)]
pub struct ReplaySource {
    messages: Vec<(i64, Bytes)>,
    next: usize,
    speedup: Option<f64>,
    started: Option<Instant>,
    committed: Arc<ReplayCommits>,
}

/// Where a [`ReplaySource`] was committed up to (shared with its committer).
#[derive(Debug, Default)]
pub struct ReplayCommits(AtomicUsize);

impl ReplayCommits {
    /// Offset of the first message not yet committed.
    pub fn offset(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Committer for ReplayCommits {
    fn commit<'a>(&'a self, next: &'a [Position]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if let Some(p) = next.iter().find(|p| p.partition == 0) {
                self.0.fetch_max(p.offset as usize, Ordering::SeqCst);
            }
            Ok(())
        })
    }
}

impl ReplaySource {
    pub fn new(events: &[Event], speedup: Option<f64>) -> Self {
        ReplaySource {
            messages: events
                .iter()
                .map(|e| (e.ts_ms, Bytes::from(e.to_json())))
                .collect(),
            next: 0,
            speedup: speedup.filter(|s| s.is_finite() && *s > 0.0),
            started: None,
            committed: Arc::default(),
        }
    }

    /// Raw payloads (valid or not), at offsets 0.. of partition 0.
    pub fn from_payloads(payloads: Vec<Vec<u8>>) -> Self {
        ReplaySource {
            messages: payloads.into_iter().map(|p| (0, Bytes::from(p))).collect(),
            next: 0,
            speedup: None,
            started: None,
            committed: Arc::default(),
        }
    }

    /// Where this source has been committed up to; readable after the
    /// source itself has been handed to a pipeline.
    pub fn commits(&self) -> Arc<ReplayCommits> {
        self.committed.clone()
    }
}

impl Source for ReplaySource {
    fn next_batch(&mut self, max: usize) -> BoxFuture<'_, Result<Option<Vec<Message>>, String>> {
        Box::pin(async move {
            if self.next >= self.messages.len() {
                return Ok(None);
            }
            let mut end = (self.next + max.max(1)).min(self.messages.len());
            if let Some(speedup) = self.speedup {
                let t0 = self.messages[0].0;
                let started = *self.started.get_or_insert_with(Instant::now);
                let due = |ts: i64| {
                    started
                        + Duration::from_secs_f64(((ts - t0) as f64 / 1000.0 / speedup).max(0.0))
                };
                tokio::time::sleep_until(due(self.messages[self.next].0)).await;
                let now = Instant::now();
                end = self.next
                    + self.messages[self.next..end]
                        .iter()
                        .take_while(|(ts, _)| due(*ts) <= now)
                        .count()
                        .max(1);
            }
            let batch = (self.next..end)
                .map(|i| Message {
                    payload: self.messages[i].1.clone(),
                    position: Some(Position {
                        partition: 0,
                        offset: i as i64,
                    }),
                    log_restarted: false,
                })
                .collect();
            self.next = end;
            Ok(Some(batch))
        })
    }

    fn committer(&self) -> Arc<dyn Committer> {
        self.committed.clone()
    }
}
