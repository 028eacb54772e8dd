//! The loop that ties a source, the per-fleet windows and rebalancers, and
//! the sinks together, and decides what may be committed.
//!
//! Backpressure: the reader task runs at most [`READ_AHEAD`] batches ahead
//! through a bounded channel, and a batch is done only when its closed
//! windows are written to every sink, so memory is bounded by a few batches
//! plus the open windows (zones x open buckets and one entry per vehicle)
//! plus the positions of events still in open windows.
//! Offsets are committed only up to the first event some open window still
//! needs: a crash replays those events rather than losing them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::event::decode_ref;
use crate::health::{Backoff, Health};
use crate::rebalance::{ContinuousRebalancer, RebalanceConfig};
use crate::sink::{DeadLetter, FleetCheckpoint, Sink, WindowOutput};
use crate::source::{Committer, Position, Source};
use crate::window::{WindowConfig, WindowOperator};
use crate::zones::ZoneMap;

/// Messages read per batch at most (a batch closes earlier when the source
/// has nothing more within its linger): ~3 MB of 200-byte messages, and
/// half the per-batch work of 8192 (measured: 0.71-0.75M -> 0.74-0.85M
/// events/s through the broker).
pub const DEFAULT_BATCH: usize = 16_384;

/// Counters of a pipeline run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PipelineStats {
    pub messages: u64,
    pub events: u64,
    pub dead_letters: u64,
    pub late: u64,
    pub unzoned_requests: u64,
    /// Messages delivered again after a rebalance, skipped.
    pub redelivered: u64,
    /// Times a partition's log started over (see
    /// [`crate::source::Message::log_restarted`]).
    pub log_restarts: u64,
    pub windows: u64,
    pub recommendations: u64,
}

#[derive(Debug)]
struct Fleet {
    id: String,
    window: WindowOperator,
    rebalancer: ContinuousRebalancer,
}

/// A run of consecutive messages of one partition awaiting commit: dead
/// letters are done once written, a fleet's events once no open window of
/// that fleet contains them. A run of events holds one fleet's events of
/// one slide bucket (named by its start): window boundaries fall on slide
/// boundaries, so every event of the bucket stops being needed when its
/// start does, and committing a run whole is exactly as far as committing
/// message by message.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pending {
    Done,
    Events { fleet: usize, bucket_ms: i64 },
}

/// Longest run of messages kept as one pending entry.
const MAX_RUN: i64 = 4096;

/// What the pipeline tracks per source partition.
#[derive(Debug)]
struct PartitionState {
    partition: i32,
    /// Newest event time seen (see [`Pipeline::progress`]).
    newest: Option<i64>,
    /// Highest offset processed: a message at or below it is a redelivery
    /// (a consumer-group rebalance resumes from the committed offset while
    /// the events after it are already in the windows) and is skipped.
    processed: Option<i64>,
    /// Runs `(first offset, last offset, what)` in offset order, not yet
    /// committable.
    pending: VecDeque<(i64, i64, Pending)>,
    /// The last position committed (made durable again at a stop).
    committed: Option<i64>,
}

impl PartitionState {
    /// The partition's log started over: what was read of the old one is
    /// in the windows, but its offsets say nothing about the new log (they
    /// are neither redeliveries nor committable there). Events of the old
    /// log still in open windows are now only in memory: the broker lost
    /// them, a crash before their windows close loses them too.
    fn restart_log(&mut self) {
        self.processed = None;
        self.pending.clear();
        self.committed = None;
    }

    /// Adds the message at `offset`, extending the last run when it
    /// directly follows it with the same pending work (dead letters, or the
    /// same fleet and slide bucket).
    fn note(&mut self, offset: i64, item: Pending) {
        match self.pending.back_mut() {
            Some((first, last, run))
                if *run == item && *last + 1 == offset && offset - *first < MAX_RUN =>
            {
                *last = offset
            }
            _ => self.pending.push_back((offset, offset, item)),
        }
    }
}

/// What [`Pipeline::with_progress`] calls after every batch.
type Progress = Box<dyn FnMut(&PipelineStats) + Send>;

/// The streaming pipeline (see the module doc).
pub struct Pipeline {
    window: WindowConfig,
    rebalance: RebalanceConfig,
    zones: Arc<dyn ZoneMap>,
    fleets: Vec<Fleet>,
    fleet_index: HashMap<String, usize>,
    sinks: Vec<Box<dyn Sink>>,
    /// Per source partition (few: a linear scan with the last one cached
    /// beats hashing for every message).
    partitions: Vec<PartitionState>,
    /// Per fleet: the checkpoint to continue from after a restart.
    resume: HashMap<String, FleetCheckpoint>,
    stats: PipelineStats,
    /// Wall clock in ms (a function, so tests control it).
    clock: fn() -> i64,
    /// Which sink is failing, while its write is retried.
    health: Health,
    /// Turns true when the run is asked to stop: ends a retry wait.
    stopping: tokio::sync::watch::Receiver<bool>,
    /// Told the counters after every batch (the service's metrics).
    progress: Option<Progress>,
}

/// One write to a sink (retried as a whole until it succeeds).
#[derive(Clone, Copy)]
enum Write<'a> {
    Window(&'a WindowOutput),
    DeadLetters(&'a [DeadLetter]),
}

/// Writes to `sink` until it succeeds, waiting [`Backoff`] between
/// attempts and reporting to `health`; gives up only when the run stops
/// (the write is then replayed after the restart: nothing was committed
/// past it).
async fn write_retrying(
    sink: &mut dyn Sink,
    write: Write<'_>,
    health: &Health,
    stopping: &tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let mut backoff = Backoff::default();
    loop {
        let result = match write {
            Write::Window(out) => sink.write_window(out).await,
            Write::DeadLetters(letters) => sink.write_dead_letters(letters).await,
        };
        let error = match result {
            Ok(()) => {
                health.recovered(sink.name());
                return Ok(());
            }
            Err(e) => e,
        };
        let wait = backoff.next_wait();
        health.failed(sink.name(), &error, wait);
        let mut stop = stopping.clone();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => {
                return Err(format!("sink {}: {error} (stopped while retrying)", sink.name()))
            }
        }
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Pipeline {
    pub fn new(
        window: WindowConfig,
        rebalance: RebalanceConfig,
        zones: Arc<dyn ZoneMap>,
        sinks: Vec<Box<dyn Sink>>,
    ) -> Result<Self, String> {
        window.validate()?;
        Ok(Pipeline {
            window,
            rebalance,
            zones,
            fleets: Vec::new(),
            fleet_index: HashMap::new(),
            sinks,
            partitions: Vec::new(),
            resume: HashMap::new(),
            stats: PipelineStats::default(),
            clock: wall_clock_ms,
            health: Health::default(),
            stopping: tokio::sync::watch::channel(false).1,
            progress: None,
        })
    }

    /// Tells `progress` the counters (see [`Pipeline::stats`]) after every
    /// batch.
    pub fn with_progress(mut self, progress: impl FnMut(&PipelineStats) + Send + 'static) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// Reports failing sinks to `health` (the service's `/health`).
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// Continue a fleet after a restart from its last persisted checkpoint:
    /// windows ending at or before `closed_until` are not emitted again,
    /// vehicles and demand continue, unchanged moves are not re-sent.
    pub fn resume_fleet(&mut self, fleet_id: &str, checkpoint: FleetCheckpoint) {
        self.resume.insert(fleet_id.to_owned(), checkpoint);
    }

    pub fn stats(&self) -> PipelineStats {
        let mut s = self.stats;
        for f in &self.fleets {
            let w = f.window.stats();
            s.late += w.late;
            s.unzoned_requests += w.unzoned_requests;
            s.windows += w.windows;
        }
        s
    }

    fn fleet(&mut self, fleet_id: &str) -> Result<usize, String> {
        if let Some(&i) = self.fleet_index.get(fleet_id) {
            return Ok(i);
        }
        let mut window = WindowOperator::new(self.window, self.zones.clone())?;
        let mut rebalancer = ContinuousRebalancer::new(self.rebalance, self.zones.as_ref());
        if let Some(c) = self.resume.remove(fleet_id) {
            window.resume_after(c.closed_until);
            window.restore_vehicles(&c.vehicles);
            rebalancer.restore(&c.demand, c.plan, self.zones.as_ref());
        }
        self.fleets.push(Fleet {
            id: fleet_id.to_owned(),
            window,
            rebalancer,
        });
        self.fleet_index
            .insert(fleet_id.to_owned(), self.fleets.len() - 1);
        Ok(self.fleets.len() - 1)
    }

    /// Processes one batch: decode, window, re-plan closed windows, write
    /// every output to every sink. Returns the positions that may now be
    /// committed (per partition, the first message still needed).
    /// `assigned`: the source's partitions, if it knows them.
    pub async fn process(
        &mut self,
        messages: Vec<crate::source::Message>,
        assigned: Option<Vec<i32>>,
    ) -> Result<Vec<Position>, String> {
        let now = (self.clock)();
        self.stats.messages += messages.len() as u64;
        // Fleets with events in this batch (flushed in index order below).
        let mut touched: Vec<usize> = Vec::new();
        let mut last_fleet: Option<usize> = None;
        let mut dead = Vec::new();
        let mut part = 0;
        for m in messages {
            // Messages without a position (a source that cannot replay)
            // count under partition -1 for event time only.
            let partition = m.position.map_or(-1, |p| p.partition);
            if self
                .partitions
                .get(part)
                .is_none_or(|s| s.partition != partition)
            {
                part = self.partition_index(partition);
            }
            if let Some(p) = m.position {
                let state = &mut self.partitions[part];
                if m.log_restarted {
                    state.restart_log();
                    self.stats.log_restarts += 1;
                }
                if state.processed.is_some_and(|done| p.offset <= done) {
                    self.stats.redelivered += 1;
                    continue;
                }
                state.processed = Some(p.offset);
            }
            let invalid = match decode_ref(&m.payload, now) {
                Ok(event) => {
                    // Messages of one fleet come in runs: skip the map lookup.
                    let f = match last_fleet {
                        Some(f) if self.fleets[f].id == *event.fleet_id => f,
                        _ => self.fleet(&event.fleet_id)?,
                    };
                    if last_fleet != Some(f) && !touched.contains(&f) {
                        touched.push(f);
                    }
                    last_fleet = Some(f);
                    let state = &mut self.partitions[part];
                    state.newest = Some(state.newest.map_or(event.ts_ms, |n| n.max(event.ts_ms)));
                    if let Some(p) = m.position {
                        state.note(
                            p.offset,
                            Pending::Events {
                                fleet: f,
                                bucket_ms: event.ts_ms
                                    - event.ts_ms.rem_euclid(self.window.slide_ms),
                            },
                        );
                    }
                    self.stats.events += 1;
                    self.fleets[f].window.push(&event);
                    continue;
                }
                Err(invalid) => invalid,
            };
            if let Some(p) = m.position {
                self.partitions[part].note(p.offset, Pending::Done);
            }
            dead.push(DeadLetter {
                reason: invalid.reason,
                payload: m.payload.to_vec(),
                position: m.position,
                received_ms: now,
            });
        }
        if !dead.is_empty() {
            self.stats.dead_letters += dead.len() as u64;
            for sink in &mut self.sinks {
                write_retrying(
                    sink.as_mut(),
                    Write::DeadLetters(&dead),
                    &self.health,
                    &self.stopping,
                )
                .await?;
            }
        }
        touched.sort_unstable();
        for f in touched {
            let progress = self.progress(assigned.as_deref());
            let closed = self.fleets[f].window.flush(progress).await?;
            let closed_at = std::time::Instant::now();
            for mut window in closed {
                let fleet = &mut self.fleets[f];
                let plan = fleet
                    .rebalancer
                    .on_window(&window, self.zones.as_ref())
                    .map_err(|e| e.to_string())?;
                self.stats.recommendations += plan.changed.len() as u64;
                let checkpoint = FleetCheckpoint {
                    closed_until: window.end_ms,
                    vehicles: std::mem::take(&mut window.vehicles),
                    demand: fleet.rebalancer.demand(),
                    plan: plan.moves.clone(),
                };
                let out = WindowOutput {
                    fleet_id: fleet.id.clone(),
                    window,
                    plan,
                    checkpoint,
                    closed_at,
                };
                for sink in &mut self.sinks {
                    write_retrying(
                        sink.as_mut(),
                        Write::Window(&out),
                        &self.health,
                        &self.stopping,
                    )
                    .await?;
                }
            }
        }
        Ok(self.committable())
    }

    /// Index of `partition`'s state, created on first sight.
    fn partition_index(&mut self, partition: i32) -> usize {
        match self
            .partitions
            .iter()
            .position(|s| s.partition == partition)
        {
            Some(i) => i,
            None => {
                self.partitions.push(PartitionState {
                    partition,
                    newest: None,
                    processed: None,
                    pending: VecDeque::new(),
                    committed: None,
                });
                self.partitions.len() - 1
            }
        }
    }

    /// Event-time progress: the least of the partitions' newest event times
    /// (every partition the source names must have delivered one), so that
    /// events of a partition that lags are not late when they arrive.
    fn progress(&self, assigned: Option<&[i32]>) -> Option<i64> {
        let newest = |p: i32| {
            self.partitions
                .iter()
                .find(|s| s.partition == p)
                .and_then(|s| s.newest)
        };
        match assigned {
            Some(parts) if !parts.is_empty() => parts
                .iter()
                .map(|&p| newest(p))
                .collect::<Option<Vec<i64>>>()
                .and_then(|v| v.into_iter().min()),
            _ => self.partitions.iter().filter_map(|s| s.newest).min(),
        }
    }

    fn committable(&mut self) -> Vec<Position> {
        let mut out = Vec::new();
        for state in &mut self.partitions {
            let mut last = None;
            while let Some(&(_, end, pending)) = state.pending.front() {
                let done = match pending {
                    Pending::Done => true,
                    Pending::Events { fleet, bucket_ms } => {
                        self.fleets[fleet].window.is_late(bucket_ms)
                    }
                };
                if !done {
                    break;
                }
                last = Some(end);
                state.pending.pop_front();
            }
            if let Some(offset) = last {
                out.push(Position {
                    partition: state.partition,
                    offset: offset + 1,
                });
            }
        }
        out.sort();
        out
    }

    /// Runs until the source ends or `stop` resolves; commits as it goes.
    ///
    /// A reader task only fetches: it moves raw batches into a channel of
    /// [`READ_AHEAD`] batches, so fetching the next batch
    /// overlaps processing this one (on another core when the runtime has
    /// one) while memory stays bounded: a full channel stops the reader.
    /// At the end the last commit is made durably.
    pub async fn run(
        &mut self,
        mut source: Box<dyn Source>,
        batch: usize,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<PipelineStats, String> {
        let committer = source.committer();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Batch, String>>(READ_AHEAD);
        let reader = tokio::spawn(async move {
            loop {
                let Ok(permit) = tx.reserve().await else {
                    break;
                }; // processor gone
                match source.next_batch(batch).await {
                    Ok(Some(messages)) => permit.send(Ok(Batch {
                        messages,
                        assigned: source.partitions(),
                    })),
                    Ok(None) => break,
                    Err(e) => {
                        permit.send(Err(e));
                        break;
                    }
                }
            }
        });
        let result = self.consume(&mut rx, committer.as_ref(), stop).await;
        // The reader (and with it the source, e.g. a consumer group member)
        // is gone before this returns, so a restart can take its place.
        drop(rx);
        reader.abort();
        let _ = reader.await;
        // Every sink is closed, even after a failure; the first error wins.
        let mut closed = Ok(());
        for sink in &mut self.sinks {
            if let Err(e) = sink.close().await {
                closed = closed.and(Err(format!("sink {}: {e}", sink.name())));
            }
        }
        let stats = result?;
        closed.map(|()| stats)
    }

    async fn consume(
        &mut self,
        batches: &mut tokio::sync::mpsc::Receiver<Result<Batch, String>>,
        committer: &dyn Committer,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<PipelineStats, String> {
        tokio::pin!(stop);
        // A stop during a batch lets the batch finish (its closed windows
        // are written and committed) but ends any wait for a failing sink.
        let (stopping, stop_seen) = tokio::sync::watch::channel(false);
        self.stopping = stop_seen;
        while !*stopping.borrow() {
            // A stop wins over a batch that is also ready.
            let next = tokio::select! {
                biased;
                _ = &mut stop => break,
                next = batches.recv() => next,
            };
            let Some(next) = next else { break }; // the source ended
            let Batch { messages, assigned } = next?;
            let commit = {
                let batch = self.process(messages, assigned);
                tokio::pin!(batch);
                loop {
                    tokio::select! {
                        done = &mut batch => break done,
                        _ = &mut stop, if !*stopping.borrow() => {
                            let _ = stopping.send(true);
                        }
                    }
                }
            }?;
            if self.progress.is_some() {
                let stats = self.stats();
                if let Some(progress) = &mut self.progress {
                    progress(&stats);
                }
            }
            if !commit.is_empty() {
                committer.commit(&commit).await?;
                for p in &commit {
                    let i = self.partition_index(p.partition);
                    self.partitions[i].committed = Some(p.offset);
                }
            }
        }
        let mut last: Vec<Position> = self
            .partitions
            .iter()
            .filter_map(|s| {
                s.committed.map(|offset| Position {
                    partition: s.partition,
                    offset,
                })
            })
            .collect();
        last.sort();
        // Bounded: with the broker gone a synchronous commit could wait
        // forever and keep the process from exiting; what is not committed is
        // replayed after the restart (writes are idempotent).
        tokio::time::timeout(FINAL_COMMIT_TIMEOUT, committer.commit_durably(&last))
            .await
            .map_err(|_| {
                "the final commit timed out; the next start replays from the previous one"
            })??;
        Ok(self.stats())
    }
}

/// How long the final, durable commit at a stop may take.
pub const FINAL_COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Raw batches the reader task may fetch ahead of processing.
pub const READ_AHEAD: usize = 2;

/// One batch as the reader hands it over.
struct Batch {
    messages: Vec<crate::source::Message>,
    assigned: Option<Vec<i32>>,
}
