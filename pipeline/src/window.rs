//! Event-time windows over telemetry, computed with DataFusion: every
//! micro-batch becomes an Arrow record batch that `sql/window_partial.sql`
//! reduces to per-(slide bucket, zone) request counts and per-vehicle last
//! reports; a window closes when the watermark (max event time - allowed
//! lateness) passes its end, and `sql/zone_window.sql` turns its buckets and
//! the vehicle table into one row per zone.
//!
//! Tumbling windows are `size == slide`; hopping windows `size = k * slide`.
//! Memory: request counts for zones x open buckets, plus one entry per
//! vehicle of the fleet (its last known zone and state).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Float64Builder, Int64Array, Int64Builder, StringBuilder, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::cast::{as_int64_array, as_string_array, as_uint64_array};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::SessionContext;

use crate::event::{Event, EventKind, EventRef, VehicleState};
use crate::udf::{haversine_udf, zone_of_udf};
use crate::zones::ZoneMap;

const PARTIAL_SQL: &str = include_str!("../../sql/window_partial.sql");
const CLOSE_SQL: &str = include_str!("../../sql/zone_window.sql");

/// Window sizes, in ms of event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowConfig {
    pub size_ms: i64,
    pub slide_ms: i64,
    pub allowed_lateness_ms: i64,
}

impl WindowConfig {
    /// Tumbling windows of `size_ms`.
    pub fn tumbling(size_ms: i64, allowed_lateness_ms: i64) -> Self {
        WindowConfig {
            size_ms,
            slide_ms: size_ms,
            allowed_lateness_ms,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.slide_ms <= 0 || self.size_ms <= 0 {
            return Err("WINDOW_SECONDS and the slide must be positive".into());
        }
        if self.size_ms % self.slide_ms != 0 {
            return Err(format!(
                "the window size ({} ms) must be a whole number of slides ({} ms)",
                self.size_ms, self.slide_ms
            ));
        }
        if self.allowed_lateness_ms < 0 {
            return Err("ALLOWED_LATENESS_SECONDS must be >= 0".into());
        }
        Ok(())
    }
}

/// One zone of a closed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ZoneWindow {
    pub zone: u64,
    pub requests: i64,
    pub idle: i64,
    pub soon_idle: i64,
    pub unserved: i64,
}

/// A closed window: `[start_ms, end_ms)` of event time.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClosedWindow {
    pub start_ms: i64,
    pub end_ms: i64,
    pub zones: Vec<ZoneWindow>,
    /// Every vehicle's last report as of `end_ms`: what a checkpoint of this
    /// window must hold. (Taken at the close: when one batch closes several
    /// windows, the operator's vehicles are already those of the last one,
    /// and a restart from an earlier window's checkpoint would start from
    /// later vehicle states.)
    #[serde(skip)]
    pub vehicles: Vec<VehicleSnapshot>,
}

/// Counters a window operator keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WindowStats {
    pub events: u64,
    /// Events older than every open window: counted, not aggregated.
    pub late: u64,
    /// Requests outside every zone.
    pub unzoned_requests: u64,
    pub windows: u64,
}

/// A vehicle's last known report, as checkpointed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VehicleSnapshot {
    pub id: String,
    pub ts_ms: i64,
    pub zone: Option<u64>,
    pub state: String,
}

#[derive(Debug, Clone, Copy)]
struct VehicleEntry {
    ts_ms: i64,
    zone: Option<u64>,
    state: VehicleState,
}

/// The windows of one fleet.
pub struct WindowOperator {
    config: WindowConfig,
    ctx: SessionContext,
    partial_sql: String,
    /// `partial_sql`'s physical plan, made once: planning costs ~3 ms, more
    /// than executing it on a batch of 8,192 events. Every execution reads
    /// the table `events` from `current` and runs a copy of this plan with
    /// its own metrics (this one never runs, so it stays the same size).
    /// (`None` until the first batch, or if DataFusion ever plans a stateful
    /// operator: then planned per batch.)
    partial_plan: Option<Arc<dyn ExecutionPlan>>,
    current: Arc<CurrentBatch>,
    /// The micro-batch being collected.
    batch: EventColumns,
    /// Bucket start -> zone -> requests.
    buckets: BTreeMap<i64, HashMap<u64, i64>>,
    vehicles: HashMap<String, VehicleEntry>,
    /// Vehicle reports not yet applied, by slide bucket: a window applies
    /// those before its end when it closes.
    pending_vehicles: BTreeMap<i64, Vec<(String, VehicleEntry)>>,
    /// Zone -> (idle, soon idle) vehicles now.
    by_zone: HashMap<u64, (i64, i64)>,
    max_ts: Option<i64>,
    /// Earliest event time seen (places the first window).
    min_ts: Option<i64>,
    /// End of the next window to close.
    next_end: Option<i64>,
    stats: WindowStats,
}

impl std::fmt::Debug for WindowOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowOperator")
            .field("config", &self.config)
            .field("next_end", &self.next_end)
            .field("stats", &self.stats)
            .finish()
    }
}

/// Events as Arrow columns (the `events` table of `sql/window_partial.sql`),
/// appended one at a time.
#[derive(Default)]
struct EventColumns {
    kind: StringBuilder,
    entity_id: StringBuilder,
    ts_ms: Int64Builder,
    lat: Float64Builder,
    lon: Float64Builder,
    state: StringBuilder,
    /// Earliest event time in the batch.
    first: Option<i64>,
}

impl EventColumns {
    fn push(&mut self, e: &EventRef<'_>) {
        match &e.kind {
            EventKind::Vehicle { state } => {
                self.kind.append_value("vehicle");
                self.state.append_value(state.as_str());
            }
            EventKind::Request { .. } => {
                self.kind.append_value("request");
                self.state.append_null();
            }
        }
        self.entity_id.append_value(&e.id);
        self.ts_ms.append_value(e.ts_ms);
        self.lat.append_value(e.lat);
        self.lon.append_value(e.lon);
        self.first = Some(self.first.map_or(e.ts_ms, |f| f.min(e.ts_ms)));
    }

    /// The batch collected so far and its earliest event time (`None` if
    /// empty); the builders start over.
    fn finish(&mut self) -> Result<Option<(RecordBatch, i64)>, String> {
        let Some(first) = self.first.take() else {
            return Ok(None);
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.kind.finish()),
            Arc::new(self.entity_id.finish()),
            Arc::new(self.ts_ms.finish()),
            Arc::new(self.lat.finish()),
            Arc::new(self.lon.finish()),
            Arc::new(self.state.finish()),
        ];
        let batch = RecordBatch::try_new(events_schema(), columns).map_err(df_error)?;
        Ok(Some((batch, first)))
    }
}

fn events_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("entity_id", DataType::Utf8, false),
        Field::new("ts_ms", DataType::Int64, false),
        Field::new("lat", DataType::Float64, false),
        Field::new("lon", DataType::Float64, false),
        Field::new("state", DataType::Utf8, true),
    ]))
}

/// The `events` table as the cached plan sees it: the micro-batch being
/// aggregated (set just before, cleared just after each execution).
#[derive(Debug)]
struct CurrentBatch {
    schema: Arc<Schema>,
    batch: std::sync::Mutex<Option<RecordBatch>>,
}

impl CurrentBatch {
    fn set(&self, batch: Option<RecordBatch>) {
        // A poisoned lock only means a panic elsewhere: the slot is still usable.
        *self.batch.lock().unwrap_or_else(|e| e.into_inner()) = batch;
    }
}

impl PartitionStream for CurrentBatch {
    fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batch = self.batch.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::iter(batch.map(Ok)),
        ))
    }
}

/// Whether `plan` can be executed again: operators that keep state across
/// executions (a repartition's channels) rule it out.
fn reusable(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.name() != "RepartitionExec" && plan.children().into_iter().all(reusable)
}

/// `column` as a plain Utf8 array (casting string views).
fn utf8(column: &ArrayRef) -> Result<ArrayRef, String> {
    datafusion::arrow::compute::cast(column, &DataType::Utf8).map_err(df_error)
}

fn df_error(e: impl std::fmt::Display) -> String {
    format!("window SQL failed: {e}")
}

impl WindowOperator {
    pub fn new(config: WindowConfig, zones: Arc<dyn ZoneMap>) -> Result<Self, String> {
        config.validate()?;
        // One partition: a micro-batch is small, and this operator is one
        // fleet's serial stage; repartitioning across threads costs more than
        // it saves (fleets and Kafka partitions are where parallelism lives).
        let ctx = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new()
                .with_target_partitions(1)
                .with_batch_size(16_384),
        );
        ctx.register_udf(zone_of_udf(zones));
        ctx.register_udf(haversine_udf());
        let current = Arc::new(CurrentBatch {
            schema: events_schema(),
            batch: std::sync::Mutex::new(None),
        });
        let events =
            StreamingTable::try_new(events_schema(), vec![current.clone()]).map_err(df_error)?;
        ctx.register_table("events", Arc::new(events))
            .map_err(df_error)?;
        Ok(WindowOperator {
            partial_sql: PARTIAL_SQL.replace("${slide_ms}", &config.slide_ms.to_string()),
            partial_plan: None,
            current,
            config,
            ctx,
            batch: EventColumns::default(),
            buckets: BTreeMap::new(),
            vehicles: HashMap::new(),
            pending_vehicles: BTreeMap::new(),
            by_zone: HashMap::new(),
            max_ts: None,
            min_ts: None,
            next_end: None,
            stats: WindowStats::default(),
        })
    }

    /// Continues after a restart: windows ending at or before `end_ms` were
    /// already emitted, so events only they contain are late.
    pub fn resume_after(&mut self, end_ms: i64) {
        self.next_end = Some(end_ms + self.config.slide_ms);
    }

    pub fn stats(&self) -> WindowStats {
        self.stats
    }

    /// End of the last window emitted, if any.
    pub fn closed_until(&self) -> Option<i64> {
        self.next_end.map(|e| e - self.config.slide_ms)
    }

    /// The watermark: event-time progress minus the allowed lateness.
    pub fn watermark(&self) -> Option<i64> {
        self.max_ts.map(|t| t - self.config.allowed_lateness_ms)
    }

    /// Every vehicle's last known report (for a checkpoint).
    pub fn vehicles(&self) -> Vec<VehicleSnapshot> {
        let mut out: Vec<VehicleSnapshot> = self
            .vehicles
            .iter()
            .map(|(id, v)| VehicleSnapshot {
                id: id.clone(),
                ts_ms: v.ts_ms,
                zone: v.zone,
                state: v.state.as_str().to_owned(),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Restores vehicles from a checkpoint (before any event is ingested).
    pub fn restore_vehicles(&mut self, vehicles: &[VehicleSnapshot]) {
        for v in vehicles {
            if let Some(state) = VehicleState::parse(&v.state) {
                self.update_vehicle(&v.id, v.ts_ms, v.zone, state);
            }
        }
    }

    /// Whether an event at `ts_ms` still counts in some open window.
    pub fn is_late(&self, ts_ms: i64) -> bool {
        self.next_end
            .is_some_and(|end| ts_ms < end - self.config.size_ms)
    }

    /// Aggregates a micro-batch and returns the windows it closes, oldest
    /// first. Event time progresses to the newest event seen (see
    /// [`WindowOperator::push`] and [`WindowOperator::flush`] for the
    /// hot path, which takes borrowed events one at a time).
    pub async fn ingest(&mut self, events: &[Event]) -> Result<Vec<ClosedWindow>, String> {
        let newest = events.iter().map(|e| e.ts_ms).max();
        self.ingest_with_progress(events, newest).await
    }

    /// The same, with event time progressing to `progress` (e.g. the least
    /// of several partitions' newest events, so that no partition's events
    /// arrive after their window closed).
    pub async fn ingest_with_progress(
        &mut self,
        events: &[Event],
        progress: Option<i64>,
    ) -> Result<Vec<ClosedWindow>, String> {
        for e in events {
            self.push(&e.as_ref());
        }
        self.flush(progress).await
    }

    /// Adds one event to the micro-batch being collected (copied into Arrow
    /// builders, no allocation per event); an event older than every open
    /// window is counted as late and dropped.
    pub fn push(&mut self, e: &EventRef<'_>) {
        self.stats.events += 1;
        if self.is_late(e.ts_ms) {
            self.stats.late += 1;
            return;
        }
        self.batch.push(e);
    }

    /// Aggregates the collected micro-batch, moves event time to `progress`
    /// and returns the windows that closes, oldest first.
    pub async fn flush(&mut self, progress: Option<i64>) -> Result<Vec<ClosedWindow>, String> {
        if let Some(p) = progress {
            self.max_ts = Some(self.max_ts.map_or(p, |m| m.max(p)));
        }
        if let Some((batch, first)) = self.batch.finish()? {
            self.aggregate(batch).await?;
            self.min_ts = Some(self.min_ts.map_or(first, |m| m.min(first)));
        }
        self.close_ready().await
    }

    /// Closes every window the watermark has passed.
    async fn close_ready(&mut self) -> Result<Vec<ClosedWindow>, String> {
        // The first window is the one holding the earliest event seen by the
        // time the watermark is known (every partition has delivered).
        if let (None, Some(first), Some(_)) = (self.next_end, self.min_ts, self.watermark()) {
            self.next_end =
                Some((first.div_euclid(self.config.slide_ms) + 1) * self.config.slide_ms);
        }
        let mut closed = Vec::new();
        while let (Some(end), Some(mark)) = (self.next_end, self.watermark()) {
            if end > mark {
                break;
            }
            closed.push(self.close(end).await?);
            self.next_end = Some(end + self.config.slide_ms);
            // Buckets no open window reaches any more.
            let keep_from = end + self.config.slide_ms - self.config.size_ms;
            self.buckets = self.buckets.split_off(&keep_from);
        }
        Ok(closed)
    }

    async fn aggregate(&mut self, batch: RecordBatch) -> Result<(), String> {
        let plan = match &self.partial_plan {
            // A copy of the cached plan with fresh (empty) metrics: every
            // execution registers its metrics in the nodes of the plan it
            // runs, so executing the cached plan itself would keep every
            // batch's metrics (~2 KB) for as long as the service runs.
            Some(plan) => reset_plan_states(plan.clone()).map_err(df_error)?,
            None => {
                let plan = self
                    .ctx
                    .sql(&self.partial_sql)
                    .await
                    .map_err(df_error)?
                    .create_physical_plan()
                    .await
                    .map_err(df_error)?;
                if reusable(&plan) {
                    self.partial_plan = Some(plan.clone());
                    reset_plan_states(plan).map_err(df_error)?
                } else {
                    plan
                }
            }
        };
        self.current.set(Some(batch));
        let out = datafusion::physical_plan::collect(plan, self.ctx.task_ctx()).await;
        self.current.set(None);
        let out = out.map_err(df_error)?;
        for b in &out {
            // String results may come back as Utf8View: read them as Utf8.
            let (kind, entity, state) =
                (utf8(b.column(0))?, utf8(b.column(3))?, utf8(b.column(4))?);
            let (kind, entity, state) = (
                as_string_array(&kind).map_err(df_error)?,
                as_string_array(&entity).map_err(df_error)?,
                as_string_array(&state).map_err(df_error)?,
            );
            let bucket = as_int64_array(b.column(1)).map_err(df_error)?;
            let zone = as_uint64_array(b.column(2)).map_err(df_error)?;
            let count = as_int64_array(b.column(5)).map_err(df_error)?;
            let ts = as_int64_array(b.column(6)).map_err(df_error)?;
            for i in 0..b.num_rows() {
                let zone = (!zone.is_null(i)).then(|| zone.value(i));
                if kind.value(i) == "request" {
                    match zone {
                        Some(z) => {
                            *self
                                .buckets
                                .entry(bucket.value(i))
                                .or_default()
                                .entry(z)
                                .or_insert(0) += count.value(i)
                        }
                        None => self.stats.unzoned_requests += count.value(i) as u64,
                    }
                } else if let Some(state) = VehicleState::parse(state.value(i)) {
                    let entry = VehicleEntry {
                        ts_ms: ts.value(i),
                        zone,
                        state,
                    };
                    self.pending_vehicles
                        .entry(bucket.value(i))
                        .or_default()
                        .push((entity.value(i).to_owned(), entry));
                }
            }
        }
        Ok(())
    }

    fn update_vehicle(&mut self, id: &str, ts_ms: i64, zone: Option<u64>, state: VehicleState) {
        let contribution = |state: VehicleState| match state {
            VehicleState::Idle => (1, 0),
            VehicleState::Occupied | VehicleState::Repositioning => (0, 1),
            _ => (0, 0),
        };
        let new = VehicleEntry { ts_ms, zone, state };
        let old = match self.vehicles.get_mut(id) {
            Some(entry) if entry.ts_ms > ts_ms => return, // an older report arrived late
            Some(entry) => Some(std::mem::replace(entry, new)),
            None => {
                self.vehicles.insert(id.to_owned(), new);
                None
            }
        };
        if let Some(VehicleEntry {
            zone: Some(z),
            state,
            ..
        }) = old
        {
            let (i, s) = contribution(state);
            let counts = self.by_zone.entry(z).or_default();
            counts.0 -= i;
            counts.1 -= s;
            if *counts == (0, 0) {
                self.by_zone.remove(&z);
            }
        }
        if let Some(z) = zone {
            let (i, s) = contribution(state);
            if (i, s) != (0, 0) {
                let counts = self.by_zone.entry(z).or_default();
                counts.0 += i;
                counts.1 += s;
            }
        }
    }

    async fn close(&mut self, end: i64) -> Result<ClosedWindow, String> {
        let start = end - self.config.size_ms;
        let later = self.pending_vehicles.split_off(&end);
        for (_, reports) in std::mem::replace(&mut self.pending_vehicles, later) {
            for (id, v) in reports {
                self.update_vehicle(&id, v.ts_ms, v.zone, v.state);
            }
        }
        let (mut rz, mut rn) = (Vec::new(), Vec::new());
        for zones in self.buckets.range(start..end).map(|(_, z)| z) {
            for (&z, &n) in zones {
                rz.push(z);
                rn.push(n);
            }
        }
        let (mut vz, mut vi, mut vs) = (Vec::new(), Vec::new(), Vec::new());
        for (&z, &(i, s)) in &self.by_zone {
            vz.push(z);
            vi.push(i);
            vs.push(s);
        }
        let requests = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("zone", DataType::UInt64, false),
                Field::new("n", DataType::Int64, false),
            ])),
            vec![
                Arc::new(UInt64Array::from(rz)),
                Arc::new(Int64Array::from(rn)),
            ],
        )
        .map_err(df_error)?;
        let vehicles = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("zone", DataType::UInt64, false),
                Field::new("idle", DataType::Int64, false),
                Field::new("soon_idle", DataType::Int64, false),
            ])),
            vec![
                Arc::new(UInt64Array::from(vz)),
                Arc::new(Int64Array::from(vi)),
                Arc::new(Int64Array::from(vs)),
            ],
        )
        .map_err(df_error)?;
        for (name, batch) in [("window_requests", requests), ("vehicle_counts", vehicles)] {
            let _ = self.ctx.deregister_table(name).map_err(df_error)?;
            self.ctx.register_batch(name, batch).map_err(df_error)?;
        }
        let out = self
            .ctx
            .sql(CLOSE_SQL)
            .await
            .map_err(df_error)?
            .collect()
            .await
            .map_err(df_error)?;
        let mut zones = Vec::new();
        for b in &out {
            let col = |i: usize| as_int64_array(b.column(i)).map_err(df_error);
            let zone = as_uint64_array(b.column(0)).map_err(df_error)?;
            let (requests, idle, soon, unserved) = (col(1)?, col(2)?, col(3)?, col(4)?);
            for i in 0..b.num_rows() {
                zones.push(ZoneWindow {
                    zone: zone.value(i),
                    requests: requests.value(i),
                    idle: idle.value(i),
                    soon_idle: soon.value(i),
                    unserved: unserved.value(i),
                });
            }
        }
        self.stats.windows += 1;
        Ok(ClosedWindow {
            start_ms: start,
            end_ms: end,
            zones,
            vehicles: self.vehicles(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zones::{CentroidZones, ZoneInfo};

    fn two_zones() -> Arc<dyn ZoneMap> {
        let z = |id: &str, lat| ZoneInfo {
            id: id.into(),
            name: id.into(),
            lat,
            lon: -73.98,
        };
        Arc::new(CentroidZones::new(vec![z("a", 40.70), z("b", 40.80)], 3.0).unwrap())
    }

    fn request(ts_ms: i64, lat: f64) -> Event {
        Event {
            kind: EventKind::Request { dropoff: None },
            id: format!("r{ts_ms}"),
            fleet_id: "f".into(),
            ts_ms,
            lat,
            lon: -73.98,
        }
    }

    fn vehicle(id: &str, ts_ms: i64, lat: f64, state: VehicleState) -> Event {
        Event {
            kind: EventKind::Vehicle { state },
            id: id.into(),
            fleet_id: "f".into(),
            ts_ms,
            lat,
            lon: -73.98,
        }
    }

    /// The reference: counts computed directly from the events.
    fn expected(events: &[Event], start: i64, end: i64, zone_lat: f64) -> i64 {
        events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Request { .. }))
            .filter(|e| (start..end).contains(&e.ts_ms) && (e.lat - zone_lat).abs() < 0.01)
            .count() as i64
    }

    #[tokio::test]
    async fn tumbling_windows_count_requests_and_the_latest_vehicle_state() {
        let mut op = WindowOperator::new(WindowConfig::tumbling(1000, 100), two_zones()).unwrap();
        let events = vec![
            request(10, 40.70),
            request(20, 40.70),
            request(30, 40.80),
            vehicle("v1", 40, 40.70, VehicleState::Idle),
            vehicle("v2", 50, 40.80, VehicleState::Idle),
            vehicle("v2", 60, 40.80, VehicleState::Occupied),
            request(500, 10.0), // outside every zone
        ];
        assert!(
            op.ingest(&events).await.unwrap().is_empty(),
            "watermark 400 < 1000"
        );
        let closed = op.ingest(&[request(1150, 40.80)]).await.unwrap();
        assert_eq!(closed.len(), 1);
        let w = &closed[0];
        assert_eq!((w.start_ms, w.end_ms), (0, 1000));
        let a = w.zones.iter().find(|z| z.zone == 0).unwrap();
        let b = w.zones.iter().find(|z| z.zone == 1).unwrap();
        assert_eq!((a.requests, a.idle, a.soon_idle, a.unserved), (2, 1, 0, 1));
        assert_eq!((b.requests, b.idle, b.soon_idle, b.unserved), (1, 0, 1, 1));
        assert_eq!(op.stats().unzoned_requests, 1);
        // Late: window [0, 1000) is closed, nothing open contains ts 900.
        op.ingest(&[request(900, 40.70)]).await.unwrap();
        assert_eq!(op.stats().late, 1);
    }

    #[tokio::test]
    async fn hopping_windows_match_direct_counts_with_out_of_order_events() {
        let cfg = WindowConfig {
            size_ms: 3000,
            slide_ms: 1000,
            allowed_lateness_ms: 500,
        };
        let mut op = WindowOperator::new(cfg, two_zones()).unwrap();
        let mut rng = fleet_engine::synthetic::Rng::new(3);
        let mut events: Vec<Event> = (0..2000)
            .map(|i| {
                let lat = if rng.unit() < 0.5 { 40.70 } else { 40.80 };
                request(i * 5, lat)
            })
            .collect();
        // Shuffle within 400 ms (less than the allowed lateness): nothing is late.
        for i in 0..events.len() {
            let j = (i + rng.below(20) as usize).min(events.len() - 1);
            if (events[i].ts_ms - events[j].ts_ms).abs() < 400 {
                events.swap(i, j);
            }
        }
        let mut closed = Vec::new();
        for chunk in events.chunks(97) {
            closed.extend(op.ingest(chunk).await.unwrap());
        }
        // Planned once, executed for every batch (the counts below show each
        // execution saw its own batch and only it).
        assert!(
            op.partial_plan.is_some(),
            "the partial plan is not reusable"
        );
        assert_eq!(op.stats().late, 0);
        assert!(closed.len() >= 8);
        for w in &closed {
            assert_eq!(w.end_ms - w.start_ms, 3000);
            for (zone, lat) in [(0, 40.70), (1, 40.80)] {
                let got = w
                    .zones
                    .iter()
                    .find(|z| z.zone == zone)
                    .map_or(0, |z| z.requests);
                assert_eq!(got, expected(&events, w.start_ms, w.end_ms, lat), "{w:?}");
            }
        }
        // Consecutive windows slide by one slide.
        assert!(closed.windows(2).all(|p| p[1].end_ms - p[0].end_ms == 1000));
    }

    /// Metrics registered in `plan` and its children.
    fn metric_count(plan: &Arc<dyn ExecutionPlan>) -> usize {
        plan.metrics().map_or(0, |m| m.iter().count())
            + plan.children().into_iter().map(metric_count).sum::<usize>()
    }

    /// The cached plan does not grow with every micro-batch: each execution
    /// registers fresh metrics in the plan it runs (DataFusion keeps them in
    /// the plan's nodes), so running the cached plan itself again and again
    /// accumulated ~2 KB per batch, without bound (the soak's growing memory).
    #[tokio::test]
    async fn the_cached_plan_stays_the_same_size_over_many_batches() {
        let mut op = WindowOperator::new(WindowConfig::tumbling(1000, 100), two_zones()).unwrap();
        let mut ts = 0;
        // Batches of 20 events, one every 10 ms of event time.
        let mut batch = || -> Vec<Event> {
            (0..20)
                .map(|i| {
                    ts += 10;
                    if i % 3 == 0 {
                        request(ts, 40.70)
                    } else {
                        vehicle(&format!("v{}", i % 5), ts, 40.80, VehicleState::Idle)
                    }
                })
                .collect()
        };
        op.ingest(&batch()).await.unwrap();
        let plan = op.partial_plan.clone().expect("the partial plan is cached");
        let after_one = metric_count(&plan);
        for _ in 0..200 {
            op.ingest(&batch()).await.unwrap();
        }
        assert!(op.stats().windows >= 30, "{:?}", op.stats());
        let plan = op.partial_plan.clone().expect("the partial plan is cached");
        assert_eq!(
            metric_count(&plan),
            after_one,
            "metrics accumulate in the cached plan"
        );
    }
}
