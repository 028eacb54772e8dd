//! The embedded analytics sink: the same rows as the ClickHouse tables,
//! written as Parquet files under `<dir>/<table>/` (the service uses
//! `$DATA_DIR/analytics`), and queryable with DataFusion
//! ([`analytics_context`]).
//!
//! Rows are written in groups ([`FLUSH_WINDOWS`] windows or
//! [`FLUSH_AFTER`], whichever comes first, and when the pipeline stops), so
//! files stay few and large enough to scan well. A crash loses at most the
//! unwritten group's analytics rows; the windows themselves are in the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    ArrayRef, Float64Array, StringArray, TimestampMillisecondArray, UInt32Array, UInt64Array,
    UInt8Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use crate::analytics::{window_rows, MetricRow, OutcomeRow, WindowRows};
use crate::sink::{DeadLetter, Sink, WindowOutput};
use crate::source::BoxFuture;
use crate::zones::ZoneMap;

/// Windows buffered before a group is written.
pub const FLUSH_WINDOWS: usize = 64;
/// Longest time rows wait to be written.
pub const FLUSH_AFTER: Duration = Duration::from_secs(30);

/// The tables windows fill, as directories under the analytics directory.
pub const TABLES: [&str; 3] = ["zone_windows", "solves", "recommendations"];

/// Every table, the ones the service's exports fill included.
pub const ALL_TABLES: [&str; 5] = [
    "zone_windows",
    "solves",
    "recommendations",
    "metrics",
    "recommendation_outcomes",
];

fn time() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn times(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(values).with_timezone("UTC"))
}

fn batch(fields: Vec<(&str, DataType)>, columns: Vec<ArrayRef>) -> Result<RecordBatch, String> {
    let schema = Schema::new(
        fields
            .into_iter()
            .map(|(name, t)| Field::new(name, t, false))
            .collect::<Vec<_>>(),
    );
    RecordBatch::try_new(Arc::new(schema), columns).map_err(|e| e.to_string())
}

/// The rows of each table as Arrow batches (the columns of `001_tables.sql`).
fn batches(rows: &WindowRows) -> Result<[RecordBatch; 3], String> {
    let z = &rows.zones;
    let zones = batch(
        vec![
            ("fleet_id", DataType::Utf8),
            ("window_start", time()),
            ("window_end", time()),
            ("zone", DataType::Utf8),
            ("requests", DataType::UInt32),
            ("idle", DataType::UInt32),
            ("soon_idle", DataType::UInt32),
            ("unserved", DataType::UInt32),
        ],
        vec![
            strings(z.iter().map(|r| r.fleet_id.as_str())),
            times(z.iter().map(|r| r.window_start)),
            times(z.iter().map(|r| r.window_end)),
            strings(z.iter().map(|r| r.zone.as_str())),
            Arc::new(UInt32Array::from_iter_values(z.iter().map(|r| r.requests))),
            Arc::new(UInt32Array::from_iter_values(z.iter().map(|r| r.idle))),
            Arc::new(UInt32Array::from_iter_values(z.iter().map(|r| r.soon_idle))),
            Arc::new(UInt32Array::from_iter_values(z.iter().map(|r| r.unserved))),
        ],
    )?;
    let s = &rows.solve;
    let solves = batch(
        vec![
            ("fleet_id", DataType::Utf8),
            ("window_end", time()),
            ("zones", DataType::UInt32),
            ("objective", DataType::Float64),
            ("unmet", DataType::UInt64),
            ("empty_km", DataType::Float64),
            ("moves", DataType::UInt32),
            ("changed", DataType::UInt32),
            ("solve_ms", DataType::Float64),
            ("warm_pivots", DataType::UInt64),
            ("warm_fallback", DataType::UInt8),
        ],
        vec![
            strings(s.iter().map(|r| r.fleet_id.as_str())),
            times(s.iter().map(|r| r.window_end)),
            Arc::new(UInt32Array::from_iter_values(s.iter().map(|r| r.zones))),
            Arc::new(Float64Array::from_iter_values(
                s.iter().map(|r| r.objective),
            )),
            Arc::new(UInt64Array::from_iter_values(s.iter().map(|r| r.unmet))),
            Arc::new(Float64Array::from_iter_values(s.iter().map(|r| r.empty_km))),
            Arc::new(UInt32Array::from_iter_values(s.iter().map(|r| r.moves))),
            Arc::new(UInt32Array::from_iter_values(s.iter().map(|r| r.changed))),
            Arc::new(Float64Array::from_iter_values(s.iter().map(|r| r.solve_ms))),
            Arc::new(UInt64Array::from_iter_values(
                s.iter().map(|r| r.warm_pivots),
            )),
            Arc::new(UInt8Array::from_iter_values(
                s.iter().map(|r| r.warm_fallback),
            )),
        ],
    )?;
    let r = &rows.recommendations;
    let recommendations = batch(
        vec![
            ("fleet_id", DataType::Utf8),
            ("window_end", time()),
            ("from_zone", DataType::Utf8),
            ("to_zone", DataType::Utf8),
            ("vehicles", DataType::UInt32),
            ("km", DataType::Float64),
            ("cost", DataType::Float64),
            ("benefit_per_vehicle", DataType::Float64),
        ],
        vec![
            strings(r.iter().map(|x| x.fleet_id.as_str())),
            times(r.iter().map(|x| x.window_end)),
            strings(r.iter().map(|x| x.from_zone.as_str())),
            strings(r.iter().map(|x| x.to_zone.as_str())),
            Arc::new(UInt32Array::from_iter_values(r.iter().map(|x| x.vehicles))),
            Arc::new(Float64Array::from_iter_values(r.iter().map(|x| x.km))),
            Arc::new(Float64Array::from_iter_values(r.iter().map(|x| x.cost))),
            Arc::new(Float64Array::from_iter_values(
                r.iter().map(|x| x.benefit_per_vehicle),
            )),
        ],
    )?;
    Ok([zones, solves, recommendations])
}

/// Writes `batch` as `dir/table/name.parquet` (through a temporary name,
/// so a reader never sees half a file; the same name again replaces it,
/// which makes a repeated write harmless). Empty batches write nothing.
pub fn write_file(dir: &Path, table: &str, name: &str, batch: &RecordBatch) -> Result<(), String> {
    if batch.num_rows() == 0 {
        return Ok(());
    }
    let folder = dir.join(table);
    std::fs::create_dir_all(&folder)
        .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    let path = folder.join(format!("{name}.parquet"));
    let partial = path.with_extension("parquet.partial");
    let file = std::fs::File::create(&partial)
        .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).map_err(|e| e.to_string())?;
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    std::fs::rename(&partial, &path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Metric points as a `metrics` batch.
pub fn metrics_batch(rows: &[MetricRow]) -> Result<RecordBatch, String> {
    batch(
        vec![
            ("name", DataType::Utf8),
            ("fleet_id", DataType::Utf8),
            ("ts", time()),
            ("value", DataType::Float64),
        ],
        vec![
            strings(rows.iter().map(|r| r.name.as_str())),
            strings(rows.iter().map(|r| r.fleet_id.as_str())),
            times(rows.iter().map(|r| r.ts)),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.value))),
        ],
    )
}

/// Recommendation outcomes as a `recommendation_outcomes` batch.
pub fn outcomes_batch(rows: &[OutcomeRow]) -> Result<RecordBatch, String> {
    batch(
        vec![
            ("fleet_id", DataType::Utf8),
            ("recommendation_id", DataType::Utf8),
            ("run_id", DataType::Utf8),
            ("status", DataType::Utf8),
            ("at", time()),
        ],
        vec![
            strings(rows.iter().map(|r| r.fleet_id.as_str())),
            strings(rows.iter().map(|r| r.recommendation_id.as_str())),
            strings(rows.iter().map(|r| r.run_id.as_str())),
            strings(rows.iter().map(|r| r.status.as_str())),
            times(rows.iter().map(|r| r.at)),
        ],
    )
}

/// Writes analytics rows as Parquet files under `dir`.
pub struct ParquetSink {
    dir: PathBuf,
    zones: Arc<dyn ZoneMap>,
    pending: WindowRows,
    windows: usize,
    since: Option<Instant>,
    /// Window-end range of the pending group (names its files).
    range: (i64, i64),
}

impl ParquetSink {
    /// Creates `dir/<table>/` for every table.
    pub fn new(dir: &Path, zones: Arc<dyn ZoneMap>) -> Result<Self, String> {
        for table in TABLES {
            std::fs::create_dir_all(dir.join(table)).map_err(|e| {
                format!(
                    "cannot create {}: {e}; set DATA_DIR to a writable folder",
                    dir.join(table).display()
                )
            })?;
        }
        Ok(ParquetSink {
            dir: dir.to_owned(),
            zones,
            pending: WindowRows::default(),
            windows: 0,
            since: None,
            range: (i64::MAX, i64::MIN),
        })
    }

    /// Writes the pending group, one file per table (`<first>-<last>.parquet`,
    /// written to a temporary name first, so a reader never sees half a file).
    pub fn flush(&mut self) -> Result<(), String> {
        if self.windows == 0 {
            return Ok(());
        }
        let (first, last) = self.range;
        for (table, batch) in TABLES.iter().zip(batches(&self.pending)?) {
            write_file(&self.dir, table, &format!("{first}-{last}"), &batch)?;
        }
        self.pending = WindowRows::default();
        self.windows = 0;
        self.since = None;
        self.range = (i64::MAX, i64::MIN);
        Ok(())
    }
}

impl Sink for ParquetSink {
    fn name(&self) -> &'static str {
        "parquet"
    }

    fn write_window<'a>(&'a mut self, out: &'a WindowOutput) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let rows = window_rows(out, self.zones.as_ref());
            self.pending.zones.extend(rows.zones);
            self.pending.solve.extend(rows.solve);
            self.pending.recommendations.extend(rows.recommendations);
            self.windows += 1;
            let since = *self.since.get_or_insert_with(Instant::now);
            self.range = (
                self.range.0.min(out.window.end_ms),
                self.range.1.max(out.window.end_ms),
            );
            if self.windows >= FLUSH_WINDOWS || since.elapsed() >= FLUSH_AFTER {
                self.flush()?;
            }
            Ok(())
        })
    }

    fn write_dead_letters<'a>(
        &'a mut self,
        _letters: &'a [DeadLetter],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.flush() })
    }
}

/// A DataFusion context with every analytics table of `dir` registered
/// (tables without files yet are left out).
pub async fn analytics_context(dir: &Path) -> Result<SessionContext, String> {
    let ctx = SessionContext::new();
    for table in ALL_TABLES {
        let path = dir.join(table);
        let has_files = std::fs::read_dir(&path)
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "parquet"))
            })
            .unwrap_or(false);
        if has_files {
            ctx.register_parquet(
                table,
                path.to_str()
                    .ok_or("the analytics directory is not UTF-8")?,
                ParquetReadOptions::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
        }
    }
    Ok(ctx)
}
