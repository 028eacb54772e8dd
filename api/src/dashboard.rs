//! The web dashboard (issue 8) served at `/`: the page and its two assets,
//! bundled into the binary, and the read model the page draws.
//!
//! - `GET /` (and `/dashboard.js`, `/dashboard.css`): public, they hold no
//!   data; served with a Content-Security-Policy allowing only this origin
//!   (no inline script or style, no CDN, no framing).
//! - `GET {BASE}/dashboard?fleet_id=`: every zone's supply against its
//!   target in the fleet's latest pipeline window, that window's plan, and
//!   the newest solved one-shot run (whose results hold a Pareto front).
//! - `GET {BASE}/dashboard/events?fleet_id=`: server-sent events, one
//!   `window` event whenever a newer window of the fleet is stored.
//!
//! Credentials: the page sends `X-API-Key` on every request, the event
//! stream included. `EventSource` cannot send headers, so the page reads the
//! stream with `fetch` instead of putting the key (or a token derived from
//! it) in the URL, where access logs, proxies and browser history would
//! keep it. Both data routes pass [`crate::access::authorize`] like every
//! other route; the caller sees only its fleets.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::http::{problem, store_error, AppState, ProblemDoc};
use crate::run::{RunMode, RunStatus};
use crate::store::{Store, StoreError};

/// The page and its assets, compiled in: the binary serves them with no
/// files next to it and nothing fetched from elsewhere at run time.
const PAGE_HTML: &str = include_str!("../assets/dashboard.html");
const PAGE_JS: &str = include_str!("../assets/dashboard.js");
const PAGE_CSS: &str = include_str!("../assets/dashboard.css");

/// Only this origin: scripts and styles from the two bundled files (no
/// inline code, so injected markup cannot run), requests to this service
/// only, no plugins, no `<base>` rewriting, no framing (clickjacking).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// How often an event stream looks at the database even when this process
/// stored no window: the pipeline may run in another process (the k8s
/// deployment splits them), whose writes no in-process signal announces.
pub const RECHECK: Duration = Duration::from_secs(5);

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Revalidated each time: a new binary brings new assets.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

pub(crate) async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE_HTML)
}

pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", PAGE_JS)
}

pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", PAGE_CSS)
}

/// A zone on the map.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ZoneView {
    pub id: String,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    /// Idle vehicles at the window's end.
    pub supply: i64,
    /// Vehicles the zone should have (from the forecast demand).
    pub target: i64,
    /// `supply - target`: a surplus above 0, a deficit below.
    pub balance: i64,
}

/// A move of the latest window's plan (an arrow on the map).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MoveView {
    pub from_zone: String,
    pub to_zone: String,
    pub vehicles: i64,
    pub km: f64,
    pub benefit_per_vehicle: f64,
    pub explanation: String,
}

/// The window the map shows.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WindowView {
    /// Event time, RFC 3339.
    pub start: String,
    pub end: String,
    /// `end` in ms since the epoch (what the event stream announces).
    pub end_ms: i64,
    pub objective: f64,
    /// The continuous run the window fed (`null` while the fleet is paused).
    pub run_id: Option<String>,
}

/// What the dashboard draws for one fleet.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Dashboard {
    pub fleet_id: String,
    /// The fleet's latest stored pipeline window; `null` before the first.
    pub window: Option<WindowView>,
    /// Every zone of that window's problem (empty without a window).
    pub zones: Vec<ZoneView>,
    /// That window's whole plan.
    pub moves: Vec<MoveView>,
    /// The newest succeeded one-shot run: its `GET /runs/{id}/results`
    /// holds the Pareto front the page charts.
    pub latest_solved_run_id: Option<String>,
}

/// A zone as the pipeline stores it in a window's report (`zone_balance`).
#[derive(Deserialize)]
struct StoredBalance {
    id: String,
    #[serde(default)]
    name: String,
    lat: f64,
    lon: f64,
    supply: i64,
    target: i64,
}

/// The zones and moves of a stored window report. Windows stored before
/// reports carried `zone_balance` show no zones rather than failing.
fn read_report(report: &Value) -> (Vec<ZoneView>, Vec<MoveView>) {
    let zones = Vec::<StoredBalance>::deserialize(&report["zone_balance"])
        .unwrap_or_default()
        .into_iter()
        .map(|z| ZoneView {
            balance: z.supply - z.target,
            id: z.id,
            name: z.name,
            lat: z.lat,
            lon: z.lon,
            supply: z.supply,
            target: z.target,
        })
        .collect();
    let moves = Vec::<MoveView>::deserialize(&report["moves"]).unwrap_or_default();
    (zones, moves)
}

impl Store {
    /// The end of `fleet_id`'s latest stored window, if any.
    pub async fn latest_window_end(&self, fleet_id: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT window_end FROM pipeline_windows WHERE fleet_id = $1 \
             ORDER BY window_end DESC LIMIT 1",
        )
        .bind(fleet_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.try_get("window_end"))
            .transpose()
            .map_err(Into::into)
    }

    /// What the dashboard draws for `fleet_id` (see [`Dashboard`]).
    pub async fn dashboard(&self, fleet_id: &str) -> Result<Dashboard, StoreError> {
        let latest = sqlx::query(
            "SELECT window_start, window_end, run_id, objective, report FROM pipeline_windows \
             WHERE fleet_id = $1 ORDER BY window_end DESC LIMIT 1",
        )
        .bind(fleet_id)
        .fetch_optional(&self.pool)
        .await?;
        let (window, zones, moves) = match latest {
            None => (None, Vec::new(), Vec::new()),
            Some(row) => {
                let report: String = row.try_get("report")?;
                let report: Value = serde_json::from_str(&report)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let (zones, moves) = read_report(&report);
                let (start_ms, end_ms): (i64, i64) =
                    (row.try_get("window_start")?, row.try_get("window_end")?);
                let window = WindowView {
                    start: fleet_engine::time::format_rfc3339(start_ms),
                    end: fleet_engine::time::format_rfc3339(end_ms),
                    end_ms,
                    objective: row.try_get("objective")?,
                    run_id: row.try_get("run_id")?,
                };
                (Some(window), zones, moves)
            }
        };
        let solved = sqlx::query(
            "SELECT id FROM optimization_runs WHERE fleet_id = $1 AND mode = $2 AND status = $3 \
             ORDER BY updated_at DESC, id DESC LIMIT 1",
        )
        .bind(fleet_id)
        .bind(RunMode::OneShot.as_str())
        .bind(RunStatus::Succeeded.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(Dashboard {
            fleet_id: fleet_id.to_owned(),
            window,
            zones,
            moves,
            latest_solved_run_id: solved.map(|r| r.try_get("id")).transpose()?,
        })
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DashboardQuery {
    /// The fleet; may be left out by a credential of exactly one fleet.
    #[param(min_length = 1, max_length = 200)]
    fleet_id: Option<String>,
}

/// The one fleet a dashboard request is about, admitted for the caller.
#[allow(clippy::result_large_err)] // the error is the response itself, returned at once
fn one_fleet(
    caller: &Caller,
    query: Result<Query<DashboardQuery>, QueryRejection>,
) -> Result<String, Response> {
    let Query(q) =
        query.map_err(|e| problem(StatusCode::BAD_REQUEST, e.body_text(), Some("fleet_id")))?;
    // As documented: a fleet id is 1 to 200 characters (like a run's).
    if let Some(fleet) = &q.fleet_id {
        if fleet.is_empty() || fleet.chars().count() > 200 {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                "must be 1 to 200 characters",
                Some("fleet_id"),
            ));
        }
    }
    caller.list_fleet(q.fleet_id)?.ok_or_else(|| {
        problem(
            StatusCode::BAD_REQUEST,
            "the dashboard shows one fleet: name it with fleet_id",
            Some("fleet_id"),
        )
    })
}

#[utoipa::path(get, path = "/api/v1/fleet-optimization/dashboard", tag = "dashboard", params(DashboardQuery),
    responses((status = 200, description = "The fleet's latest window: every zone's supply and target, the plan's moves, \
                  and the newest solved run. `GET /api/v1/fleet-optimization/dashboard/events?fleet_id=` streams a \
                  `window` event (server-sent events) whenever a newer window is stored.", body = Dashboard),
              (status = 400, description = "No `fleet_id` from a credential of several fleets", body = ProblemDoc)))]
pub(crate) async fn get_dashboard(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<DashboardQuery>, QueryRejection>,
) -> Response {
    let fleet = match one_fleet(&caller, query) {
        Ok(fleet) => fleet,
        Err(response) => return response,
    };
    match state.store.dashboard(&fleet).await {
        Ok(view) => Json(view).into_response(),
        Err(e) => store_error(e),
    }
}

/// Server-sent events: at once a `window` event with the latest window's
/// end (`null` before the first), then one per newer window. Kept out of
/// the OpenAPI document: it never ends, which document-driven clients and
/// fuzzers cannot handle; its access rule is in [`crate::access::ROUTES`].
pub(crate) async fn dashboard_events(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<DashboardQuery>, QueryRejection>,
) -> Response {
    let fleet = match one_fleet(&caller, query) {
        Ok(fleet) => fleet,
        Err(response) => return response,
    };
    let watch = WindowWatch {
        store: state.store.clone(),
        saved: state.store.windows_saved.subscribe(),
        stopping: state.stopping.subscribe(),
        fleet,
        last: None,
        announced: false,
    };
    let events = futures_util::stream::unfold(watch, |mut watch| async move {
        let end = watch.next_change().await?;
        let data = json!({"fleet_id": watch.fleet, "window_end_ms": end}).to_string();
        Some((
            Ok::<_, Infallible>(Event::default().event("window").data(data)),
            watch,
        ))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// What one event stream remembers.
struct WindowWatch {
    store: Store,
    /// Bumped by every window this process stores.
    saved: tokio::sync::watch::Receiver<u64>,
    /// True once the server shuts down: the stream ends, so graceful
    /// shutdown does not wait forever on it.
    stopping: tokio::sync::watch::Receiver<bool>,
    fleet: String,
    last: Option<i64>,
    announced: bool,
}

impl WindowWatch {
    /// The fleet's latest window end once it differs from the last one
    /// announced (the first call answers at once); `None` at shutdown.
    async fn next_change(&mut self) -> Option<Option<i64>> {
        loop {
            if *self.stopping.borrow() {
                return None;
            }
            if self.announced {
                tokio::select! {
                    changed = self.saved.changed() => {
                        if changed.is_err() {
                            tokio::time::sleep(RECHECK).await;
                        }
                    }
                    _ = self.stopping.changed() => {}
                    _ = tokio::time::sleep(RECHECK) => {}
                }
                if *self.stopping.borrow() {
                    return None;
                }
            }
            // A failed read is tried again at the next wake-up.
            let Ok(end) = self.store.latest_window_end(&self.fleet).await else {
                self.announced = true;
                continue;
            };
            if !self.announced || end != self.last {
                self.announced = true;
                self.last = end;
                return Some(end);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_becomes_zones_with_their_balance_and_moves() {
        let report = json!({
            "zone_balance": [
                {"id": "4", "name": "Alphabet City", "lat": 40.72, "lon": -73.97, "supply": 5, "target": 2, "floor": 1},
                {"id": "7", "name": "Astoria", "lat": 40.76, "lon": -73.92, "supply": 0, "target": 3, "floor": 1}
            ],
            "moves": [{"from_zone": "4", "to_zone": "7", "vehicles": 3, "km": 6.1, "cost": 3.7,
                       "benefit_per_vehicle": 11.3, "explanation": "why"}]
        });
        let (zones, moves) = read_report(&report);
        assert_eq!(zones.iter().map(|z| z.balance).collect::<Vec<_>>(), [3, -3]);
        assert_eq!(moves.len(), 1);
        assert_eq!((moves[0].from_zone.as_str(), moves[0].vehicles), ("4", 3));
        // An older report without zone balances: no zones, no failure.
        let (zones, _) = read_report(&json!({"moves": []}));
        assert!(zones.is_empty());
    }

    #[test]
    fn the_policy_allows_this_origin_only() {
        assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'none'"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert!(!CONTENT_SECURITY_POLICY.contains("http"));
    }
}
