//! # fleet-pipeline
//!
//! The real-time loop (DESIGN.md sections 1 and 3): telemetry sources ->
//! decoding and validation -> zone assignment and event-time windows
//! (DataFusion, the SQL in `sql/`) -> continuous warm-started re-solves in
//! the engine -> sinks for the recommendations that changed.
//!
//! Architecture invariant: depends on the engine only; storage, HTTP and the
//! cache are reached through the [`sink::Sink`] trait the binary implements.

pub mod analytics;
/// The DataFusion this crate is built with (for callers querying [`parquet_sink`] files).
pub use datafusion;
pub mod backtest;
pub mod clickhouse_sink;
pub mod event;
pub mod health;
pub mod kafka;
pub mod nyc;
pub mod parquet_sink;
pub mod rebalance;
pub mod runner;
mod scan;
pub mod sink;
pub mod source;
pub mod udf;
pub mod window;
pub mod zones;
