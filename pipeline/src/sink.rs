//! Where results go, behind one trait (Vector style): Kafka
//! (`fleet.recommendations`, `fleet.telemetry.dlq`), and the store and cache
//! the binary provides. Every write must be idempotent: after a crash the
//! pipeline replays from the last committed offsets and writes again.

use crate::rebalance::{PlannedMove, WindowPlan};
use crate::source::{BoxFuture, Position};
use crate::window::{ClosedWindow, VehicleSnapshot};

/// A window's outcome for one fleet.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WindowOutput {
    pub fleet_id: String,
    pub window: ClosedWindow,
    pub plan: WindowPlan,
    /// What a restarted pipeline needs to continue exactly after this
    /// window; a sink that persists it must do so atomically with the window.
    pub checkpoint: FleetCheckpoint,
    /// When the window closed (for latency: close -> persisted).
    #[serde(skip)]
    pub closed_at: std::time::Instant,
}

/// A fleet's pipeline state after a window, beyond what replaying the
/// uncommitted telemetry rebuilds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FleetCheckpoint {
    /// End of the window this follows.
    pub closed_until: i64,
    pub vehicles: Vec<VehicleSnapshot>,
    /// Smoothed demand per zone key.
    pub demand: Vec<(u64, f64)>,
    /// The window's whole plan.
    pub plan: Vec<PlannedMove>,
}

/// A message that is not a valid event, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub reason: String,
    pub payload: Vec<u8>,
    pub position: Option<Position>,
    /// Wall-clock ms when it was read.
    pub received_ms: i64,
}

/// A destination for window outputs and dead letters.
pub trait Sink: Send {
    /// For logs and errors.
    fn name(&self) -> &'static str;

    /// Persists a window's outcome (idempotent per fleet and window).
    fn write_window<'a>(&'a mut self, out: &'a WindowOutput) -> BoxFuture<'a, Result<(), String>>;

    /// Persists dead letters (idempotent per position where there is one).
    fn write_dead_letters<'a>(
        &'a mut self,
        letters: &'a [DeadLetter],
    ) -> BoxFuture<'a, Result<(), String>>;

    /// Writes out anything buffered; called once when the pipeline stops.
    fn close(&mut self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// What a [`MemorySink`] collected.
#[derive(Debug, Default, Clone)]
pub struct Collected {
    pub windows: Vec<WindowOutput>,
    pub dead_letters: Vec<DeadLetter>,
}

/// Collects everything in memory, shared with whoever keeps a clone: for
/// tests and the `replay` command.
#[derive(Debug, Clone, Default)]
pub struct MemorySink(pub std::sync::Arc<std::sync::Mutex<Collected>>);

impl MemorySink {
    /// A copy of what was collected so far.
    pub fn collected(&self) -> Collected {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Sink for MemorySink {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn write_window<'a>(&'a mut self, out: &'a WindowOutput) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0
                .lock()
                .map_err(|e| e.to_string())?
                .windows
                .push(out.clone());
            Ok(())
        })
    }

    fn write_dead_letters<'a>(
        &'a mut self,
        letters: &'a [DeadLetter],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0
                .lock()
                .map_err(|e| e.to_string())?
                .dead_letters
                .extend_from_slice(letters);
            Ok(())
        })
    }
}
