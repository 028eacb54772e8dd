//! The service's own telemetry: a request id on every response, one
//! structured JSON log line per request (no bodies, headers or query
//! strings, so no tokens or identifiers leak), and Prometheus counters and
//! latency histograms per route, plus run outcomes and solve times.
//!
//! Hand-rolled on atomics: a few counters do not justify a metrics stack in
//! the build, and the exposition format is plain text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::store::{new_id, now_ms};

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    total: AtomicU64,
    /// Sum of observations in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|&b| seconds <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        let total = self.total.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {total}");
        let labels = labels.trim_end_matches(',');
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

#[derive(Default)]
struct Registry {
    /// (method, route, status class) -> count.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// (method, route) -> latency.
    latency: Mutex<BTreeMap<(String, String), &'static Histogram>>,
    runs_succeeded: AtomicU64,
    runs_failed: AtomicU64,
    solve_seconds: Histogram,
    stream_windows: AtomicU64,
    stream_recommendations: AtomicU64,
    stream_dead_letters: AtomicU64,
    stream_messages: AtomicU64,
    stream_redelivered: AtomicU64,
    stream_log_restarts: AtomicU64,
    /// Window close -> its recommendations persisted.
    stream_latency: Histogram,
    /// The latest value of each of the service's own metric points
    /// (the seed's five metrics), per (name, fleet).
    points: Mutex<BTreeMap<(String, String), f64>>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// Log levels, least to most verbose; `LOG_LEVEL` picks the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

fn threshold() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        match std::env::var("LOG_LEVEL")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "debug" | "trace" => Level::Debug,
            _ => Level::Info,
        }
    })
}

/// Writes one JSON log line to stderr if `level` passes `LOG_LEVEL`.
pub fn log(level: Level, msg: &str, fields: serde_json::Value) {
    if level > threshold() {
        return;
    }
    let mut line = serde_json::json!({
        "ts_ms": now_ms(),
        "level": format!("{level:?}").to_ascii_lowercase(),
        "msg": msg,
    });
    if let (Some(line), serde_json::Value::Object(extra)) = (line.as_object_mut(), fields) {
        line.extend(extra);
    }
    eprintln!("{line}");
}

/// Records a finished run for Prometheus.
pub fn record_run(succeeded: bool, solve_seconds: Option<f64>) {
    let r = registry();
    if succeeded {
        &r.runs_succeeded
    } else {
        &r.runs_failed
    }
    .fetch_add(1, Ordering::Relaxed);
    if let Some(s) = solve_seconds {
        r.solve_seconds.observe(s);
    }
}

/// Records a window the streaming pipeline persisted: recommendations sent
/// and seconds from the window's close to persisted.
pub fn record_window(recommendations: usize, seconds: f64) {
    let r = registry();
    r.stream_windows.fetch_add(1, Ordering::Relaxed);
    r.stream_recommendations
        .fetch_add(recommendations as u64, Ordering::Relaxed);
    r.stream_latency.observe(seconds);
}

/// Records the latest value of a metric point the service wrote itself
/// (`optimization_success`, `cost_reduction_pct`, ...), for Prometheus.
pub fn record_point(name: &str, fleet_id: &str, value: f64) {
    if let Ok(mut points) = registry().points.lock() {
        points.insert((name.to_owned(), fleet_id.to_owned()), value);
    }
}

/// Records telemetry messages read (counts since the last call): all,
/// those delivered again (skipped), and partition logs that started over.
pub fn record_consumed(messages: u64, redelivered: u64, log_restarts: u64) {
    let r = registry();
    r.stream_messages.fetch_add(messages, Ordering::Relaxed);
    r.stream_redelivered
        .fetch_add(redelivered, Ordering::Relaxed);
    r.stream_log_restarts
        .fetch_add(log_restarts, Ordering::Relaxed);
}

/// Records telemetry that went to the dead-letter store.
pub fn record_dead_letters(n: usize) {
    registry()
        .stream_dead_letters
        .fetch_add(n as u64, Ordering::Relaxed);
}

/// Middleware: request id, timing, a log line and the per-route metrics.
pub async fn observe(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().to_string();
    // The route template (`/runs/{id}`), never the concrete path: bounded
    // label values, and no ids in metrics.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
        .map_or_else(new_id, str::to_owned);
    let mut response = next.run(request).await;
    let seconds = start.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let r = registry();
    if let Ok(mut requests) = r.requests.lock() {
        *requests
            .entry((method.clone(), route.clone(), status))
            .or_default() += 1;
    }
    if let Ok(mut latency) = r.latency.lock() {
        let histogram = *latency
            .entry((method.clone(), route.clone()))
            .or_insert_with(|| Box::leak(Box::new(Histogram::default())));
        histogram.observe(seconds);
    }
    let level = if status >= 500 {
        Level::Error
    } else {
        Level::Info
    };
    // Built only when it will be written: the hot path stays allocation-light.
    if level <= threshold() {
        log(
            level,
            "request",
            serde_json::json!({"request_id": id, "method": method, "route": route, "status": status, "ms": seconds * 1e3}),
        );
    }
    response
}

/// `GET /metrics` (Prometheus text exposition format 0.0.4).
pub async fn prometheus() -> Response {
    let r = registry();
    let mut out = String::new();
    out.push_str("# HELP http_requests_total HTTP requests by method, route and status.\n");
    out.push_str("# TYPE http_requests_total counter\n");
    if let Ok(requests) = r.requests.lock() {
        for ((method, route, status), n) in requests.iter() {
            let _ = writeln!(out, "http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}");
        }
    }
    out.push_str(
        "# HELP http_request_duration_seconds HTTP request latency by method and route.\n",
    );
    out.push_str("# TYPE http_request_duration_seconds histogram\n");
    if let Ok(latency) = r.latency.lock() {
        for ((method, route), h) in latency.iter() {
            h.render(
                &mut out,
                "http_request_duration_seconds",
                &format!("method=\"{method}\",route=\"{route}\","),
            );
        }
    }
    out.push_str("# HELP optimization_runs_total Finished optimization runs by outcome.\n");
    out.push_str("# TYPE optimization_runs_total counter\n");
    let _ = writeln!(
        out,
        "optimization_runs_total{{outcome=\"succeeded\"}} {}",
        r.runs_succeeded.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "optimization_runs_total{{outcome=\"failed\"}} {}",
        r.runs_failed.load(Ordering::Relaxed)
    );
    let (succeeded, failed) = (
        r.runs_succeeded.load(Ordering::Relaxed),
        r.runs_failed.load(Ordering::Relaxed),
    );
    if succeeded + failed > 0 {
        let _ = writeln!(
            out,
            "# HELP optimization_success_rate Share of finished runs that succeeded.\n\
             # TYPE optimization_success_rate gauge\noptimization_success_rate {}",
            succeeded as f64 / (succeeded + failed) as f64
        );
    }
    out.push_str("# HELP fleet_metric The latest value of the service's own metrics per fleet: optimization_success, optimization_execution_time_ms, cost_reduction_pct, fleet_efficiency_improvement_pct, recommendation_adoption_rate_pct.\n");
    out.push_str("# TYPE fleet_metric gauge\n");
    if let Ok(points) = r.points.lock() {
        for ((name, fleet), value) in points.iter() {
            let _ = writeln!(
                out,
                "fleet_metric{{name=\"{}\",fleet_id=\"{}\"}} {value}",
                label(name),
                label(fleet)
            );
        }
    }
    out.push_str("# HELP optimization_solve_seconds Engine solve time of runs.\n");
    out.push_str("# TYPE optimization_solve_seconds histogram\n");
    r.solve_seconds
        .render(&mut out, "optimization_solve_seconds", "");
    for (name, help, value) in [
        (
            "pipeline_windows_total",
            "Closed windows persisted.",
            &r.stream_windows,
        ),
        (
            "pipeline_recommendations_total",
            "New or changed recommendations persisted.",
            &r.stream_recommendations,
        ),
        (
            "pipeline_dead_letters_total",
            "Invalid telemetry messages kept in the dead-letter store.",
            &r.stream_dead_letters,
        ),
        (
            "pipeline_messages_total",
            "Telemetry messages read, redeliveries included.",
            &r.stream_messages,
        ),
        (
            "pipeline_redelivered_total",
            "Telemetry messages delivered again after a consumer-group rebalance, skipped.",
            &r.stream_redelivered,
        ),
        (
            "pipeline_log_restarts_total",
            "Times a partition's log started over (broker restarted without its data, topic re-created).",
            &r.stream_log_restarts,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            value.load(Ordering::Relaxed)
        );
    }
    out.push_str("# HELP pipeline_window_to_persisted_seconds From a window's close to its recommendations persisted.\n");
    out.push_str("# TYPE pipeline_window_to_persisted_seconds histogram\n");
    r.stream_latency
        .render(&mut out, "pipeline_window_to_persisted_seconds", "");
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        out,
    )
        .into_response()
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
