//! How the pipeline is doing while a dependency fails: which component (a
//! sink, the source, the pipeline as a whole) is being retried, since when
//! and why; and the backoff between attempts.
//!
//! A write that cannot be made is retried, never dropped: the pipeline
//! stalls (and with it, through backpressure, the source) until the write
//! succeeds or the service stops, and nothing is committed past it. The
//! service shows [`Health`] on `/health` and logs each failure through an
//! observer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One component's ongoing failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Failing {
    /// The latest error.
    pub error: String,
    /// Failed attempts so far.
    pub attempts: u32,
    pub since: Instant,
}

/// What the observer hears: a component failed (attempt n) or recovered.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<'a> {
    Failed {
        component: &'a str,
        error: &'a str,
        attempts: u32,
        retry_in: Duration,
    },
    Recovered {
        component: &'a str,
        attempts: u32,
        after: Duration,
    },
}

type Observer = Arc<dyn Fn(Change<'_>) + Send + Sync>;

/// Shared, cheap to clone; the pipeline reports, the service reads.
///
/// ```
/// use fleet_pipeline::health::Health;
/// use std::time::Duration;
/// let health = Health::default();
/// health.failed("store", "connection refused", Duration::from_millis(100));
/// assert!(!health.is_ok());
/// health.recovered("store");
/// assert!(health.is_ok());
/// ```
#[derive(Clone, Default)]
pub struct Health {
    failing: Arc<Mutex<BTreeMap<String, Failing>>>,
    observer: Option<Observer>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("failing", &self.failing())
            .finish()
    }
}

impl Health {
    /// Calls `observer` on every failure and recovery (the service logs them).
    pub fn with_observer(mut self, observer: impl Fn(Change<'_>) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Records a failed attempt of `component`, retried after `retry_in`.
    pub fn failed(&self, component: &str, error: &str, retry_in: Duration) {
        let attempts = {
            let mut map = self.failing.lock().unwrap_or_else(|p| p.into_inner());
            let entry = map.entry(component.to_owned()).or_insert(Failing {
                error: String::new(),
                attempts: 0,
                since: Instant::now(),
            });
            entry.error = error.to_owned();
            entry.attempts += 1;
            entry.attempts
        };
        if let Some(observe) = &self.observer {
            observe(Change::Failed {
                component,
                error,
                attempts,
                retry_in,
            });
        }
    }

    /// `component` works again (a no-op when it was not failing).
    pub fn recovered(&self, component: &str) {
        let was = self
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(component);
        if let (Some(was), Some(observe)) = (was, &self.observer) {
            observe(Change::Recovered {
                component,
                attempts: was.attempts,
                after: was.since.elapsed(),
            });
        }
    }

    /// Whether nothing is failing.
    pub fn is_ok(&self) -> bool {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// The failing components, by name.
    pub fn failing(&self) -> BTreeMap<String, Failing> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Exponential backoff: 100 ms doubling to at most 10 s.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: Self::FIRST }
    }
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(100);
    pub const MAX: Duration = Duration::from_secs(10);

    /// The wait before the next attempt (then doubles, up to [`Backoff::MAX`]).
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }

    /// Back to the first wait (after a success).
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..10).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(
            waits,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        b.reset();
        assert_eq!(b.next_wait(), Backoff::FIRST);
    }

    #[test]
    fn failures_count_per_component_and_the_observer_hears_each_change() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        let health = Health::default().with_observer(move |c| {
            log.lock().unwrap().push(match c {
                Change::Failed {
                    component,
                    attempts,
                    ..
                } => format!("{component} failed {attempts}"),
                Change::Recovered {
                    component,
                    attempts,
                    ..
                } => format!("{component} recovered after {attempts}"),
            })
        });
        let wait = Duration::from_millis(1);
        health.failed("store", "refused", wait);
        health.failed("store", "still refused", wait);
        health.failed("kafka", "down", wait);
        assert_eq!(health.failing()["store"].attempts, 2);
        assert_eq!(health.failing()["store"].error, "still refused");
        health.recovered("store");
        assert!(!health.is_ok());
        health.recovered("kafka");
        health.recovered("kafka"); // not failing: nothing heard
        assert!(health.is_ok());
        assert_eq!(
            *heard.lock().unwrap(),
            [
                "store failed 1",
                "store failed 2",
                "kafka failed 1",
                "store recovered after 2",
                "kafka recovered after 1"
            ]
        );
    }
}
