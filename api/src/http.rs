//! The HTTP API (DESIGN.md section 4): thin axum handlers over the store and
//! the engine. Errors are RFC 7807 `application/problem+json` documents that
//! name the offending field.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use fleet_engine::run_settings::{Constraints, HorizonSettings, ObjectiveWeights};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tower_http::compression::Predicate;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::access::Security;
use crate::auth::{Caller, Fleets};
use crate::cache::{
    metrics_key, recommendations_key, results_key, run_key, runs_list_key, runs_scope, Cache,
    METRICS_SCOPE,
};
use crate::rebalancing::{PlannedMove, Rebalancing, RebalancingStatus};
use crate::run::{Run, RunMode, RunStatus};
use crate::solve::{self, RunSpec};
use crate::store::{
    now_ms, MetricBucket, MetricFilter, MetricPoint, NewRun, Recommendation, Store, StoreError,
};
use crate::{access, admin, dashboard, telemetry};
use fleet_engine::time::{parse_duration_ms, parse_rfc3339};

/// Base path of every resource.
pub const BASE: &str = "/api/v1/fleet-optimization";
/// Largest page a list returns.
pub const MAX_LIMIT: usize = 500;
/// Largest request body accepted (an inline problem of ~10k zones fits).
pub const BODY_LIMIT: usize = 2 << 20;
/// Responses smaller than this are sent uncompressed.
pub const COMPRESS_ABOVE_BYTES: u16 = 8192;
/// How long a request may take before the service answers 503 instead.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Middleware: a request that outlives [`REQUEST_TIMEOUT`] is answered with
/// a 503 problem document (its work is dropped; runs execute outside requests).
async fn time_limit(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(state.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the request took too long; retry later",
            None,
        ),
    }
}

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Hot reads (finished runs' results and recommendations).
    pub cache: Cache,
    /// Bounds how many runs execute at once; the rest wait in line.
    pub workers: Arc<Semaphore>,
    /// How long a request may take ([`REQUEST_TIMEOUT`] unless configured).
    pub request_timeout: std::time::Duration,
    /// Whether the streaming pipeline runs (continuous runs are possible).
    pub streaming: bool,
    /// Health of dependencies this crate does not talk to itself (the
    /// binary adds Kafka's): name -> check answering `ok` or `down`.
    pub checks: Vec<(&'static str, DependencyCheck)>,
    /// Authentication, rate limits and the fleet-owner cache ([`crate::access`]).
    pub security: Arc<Security>,
    /// Turns true when [`serve`] begins its graceful shutdown: never-ending
    /// responses (the dashboard's event streams) end then, so it can finish.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
}

/// A health check of one dependency: answers `ok` or `down`.
pub type DependencyCheck = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = &'static str> + Send>>
        + Send
        + Sync,
>;

impl AppState {
    /// A state with the in-process cache; see [`AppState::with_cache`].
    pub fn new(store: Store, workers: usize) -> Self {
        let cache = Cache::memory();
        AppState {
            store: store.with_cache(cache.clone()),
            cache,
            workers: Arc::new(Semaphore::new(workers.max(1))),
            request_timeout: REQUEST_TIMEOUT,
            streaming: false,
            checks: Vec::new(),
            security: Arc::new(Security::default()),
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// Uses `security` (JWT settings, rate limit) instead of the default
    /// (API keys only, [`crate::rate_limit::DEFAULT_PER_SECOND`]).
    pub fn with_security(mut self, security: Security) -> Self {
        self.security = Arc::new(security);
        self
    }

    /// Adds a dependency to `/health` (replacing its `embedded` entry).
    pub fn with_check(mut self, name: &'static str, check: DependencyCheck) -> Self {
        self.checks.push((name, check));
        self
    }

    pub fn with_streaming(mut self, on: bool) -> Self {
        self.streaming = on;
        self
    }

    pub fn with_request_timeout(mut self, limit: std::time::Duration) -> Self {
        self.request_timeout = limit;
        self
    }

    /// Uses `cache` for hot reads, and tells it about the store's run writes.
    pub fn with_cache(mut self, cache: Cache) -> Self {
        self.store = self.store.with_cache(cache.clone());
        self.cache = cache;
        self
    }
}

/// The RFC 7807 document every error answers with (for the OpenAPI document).
#[derive(Debug, serde::Serialize, ToSchema)]
#[allow(dead_code)] // only described, built with `json!` in `problem`
pub(crate) struct ProblemDoc {
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    /// The offending field, e.g. `problem.zones[1].idle`.
    field: Option<String>,
}

/// Declares the two credentials every non-public route accepts.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// Completes the document with what every operation can answer besides its
/// handler's own responses, and gives problem documents their media type:
/// - every error body (`ProblemDoc`) is `application/problem+json`, as served;
/// - secured operations: 400 (bad input, e.g. a NUL character in a
///   parameter), 401 (no or bad credentials), 403 (the role lacks the
///   permission), 404 (a fleet or resource outside the caller's scope is
///   answered like a missing one), 429 (rate limited, with `Retry-After`);
/// - operations with a body: 413 (body over [`BODY_LIMIT`]), 415 (not
///   `Content-Type: application/json`), 422 (a NUL character in a string);
/// - every operation: 503 (a dependency is down, or the request outlived
///   [`REQUEST_TIMEOUT`]).
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{
            schema::Type, ContentBuilder, Header, ObjectBuilder, Ref, RefOr, ResponseBuilder,
        };
        const PROBLEM: &str = "application/problem+json";
        let problem_ref = || RefOr::Ref(Ref::from_schema_name("ProblemDoc"));
        let problem_response = |description: &str| {
            ResponseBuilder::new().description(description).content(
                PROBLEM,
                ContentBuilder::new().schema(Some(problem_ref())).build(),
            )
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                for response in op.responses.responses.values_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    let is_problem = response
                        .content
                        .get("application/json")
                        .is_some_and(|c| c.schema == Some(problem_ref()));
                    if is_problem {
                        if let Some(content) = response.content.shift_remove("application/json") {
                            response.content.insert(PROBLEM.into(), content);
                        }
                    }
                }
                // `security(())` (public) is one empty requirement.
                let public = op.security.as_ref().is_some_and(|reqs| {
                    reqs.iter()
                        .all(|r| serde_json::to_value(r).is_ok_and(|v| v == json!({})))
                });
                let mut common = Vec::new();
                if !public {
                    common.push((
                        "400",
                        problem_response("Bad input (field named): a malformed or mistyped body, a bad parameter, a NUL character"),
                    ));
                    common.push(("401", problem_response("No or bad credentials")));
                    common.push((
                        "403",
                        problem_response("The caller's role lacks the permission"),
                    ));
                    common.push((
                        "404",
                        problem_response(
                            "No such resource, or a fleet or resource outside the caller's scope",
                        ),
                    ));
                    let retry_after = Header::new(ObjectBuilder::new().schema_type(Type::Integer));
                    common.push((
                        "429",
                        problem_response("Rate limited; retry after `Retry-After` seconds")
                            .header("Retry-After", retry_after),
                    ));
                }
                if op.request_body.is_some() {
                    common.push(("413", problem_response("Body larger than 2 MiB")));
                    common.push((
                        "415",
                        problem_response("Not `Content-Type: application/json`"),
                    ));
                    common.push((
                        "422",
                        problem_response(
                            "Semantically invalid (field named), e.g. a NUL character in a string",
                        ),
                    ));
                }
                common.push((
                    "503",
                    problem_response("A dependency is down, or the request took longer than 30 s"),
                ));
                for (status, response) in common {
                    op.responses
                        .responses
                        .entry(status.into())
                        .or_insert_with(|| response.build().into());
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    modifiers(&SecuritySchemes),
    security(("bearer" = []), ("api_key" = [])),
    info(
        title = "fleet-optimization",
        description = "Exact, streaming fleet rebalancing (DESIGN.md section 4)."
    ),
    components(schemas(
        ProblemDoc,
        crate::api_keys::ApiKey,
        crate::auth::Role,
        crate::audit::AuditEntry,
        Run,
        RunStatus,
        RunMode,
        Recommendation,
        Rebalancing,
        RebalancingStatus,
        PlannedMove,
        MetricPoint,
        MetricBucket
    ))
)]
struct ApiDoc;

/// The service's routes, and the OpenAPI document generated from the same
/// handler annotations (so no route can be missing from it).
pub fn router(state: AppState) -> Router {
    let (api_routes, openapi) = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(list_runs, create_run))
        .routes(routes!(get_run, update_run, delete_run))
        .routes(routes!(get_results, what_if_results))
        .routes(routes!(get_recommendations, decide_recommendations))
        .routes(routes!(query_metrics, ingest_metrics))
        .routes(routes!(list_rebalancing, create_rebalancing))
        .routes(routes!(
            get_rebalancing,
            update_rebalancing,
            delete_rebalancing
        ))
        .routes(routes!(admin::list_keys, admin::create_key))
        .routes(routes!(admin::revoke_key))
        .routes(routes!(admin::list_audit))
        .routes(routes!(dashboard::get_dashboard))
        .split_for_parts();
    // After the routes are in: `ApiDoc`'s own modifiers run before them.
    let mut openapi = openapi;
    utoipa::Modify::modify(&CommonResponses, &mut openapi);
    let document = Arc::new(openapi);
    api_routes
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let document = document.clone();
                async move { Json(document.as_ref().clone()) }
            }),
        )
        // The dashboard's page and event stream (outside the document: the
        // stream never ends; see `crate::dashboard`).
        .route("/", get(dashboard::page))
        .route("/dashboard.js", get(dashboard::script))
        .route("/dashboard.css", get(dashboard::style))
        .route(
            &format!("{BASE}/dashboard/events"),
            get(dashboard::dashboard_events),
        )
        .route("/metrics", get(telemetry::prometheus))
        .route("/metrics/prometheus", get(telemetry::prometheus))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            time_limit,
        ))
        // After access control, so a refused write is still audited.
        .route_layer(axum::middleware::from_fn(refuse_nul_in_body))
        // Every route passes access control (one place: `crate::access`).
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::authorize,
        ))
        // Before access control: the audit log stores the path's id.
        .route_layer(axum::middleware::from_fn(refuse_nul_in_url))
        .route_layer(axum::middleware::from_fn(telemetry::observe))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        // gzip when the client accepts it and the body is worth it: small hot
        // documents (a run, a page of recommendations) cost more CPU to
        // compress than they save on the wire.
        .layer(
            // Fastest level: most of gzip's saving on JSON at a fraction of the CPU.
            tower_http::compression::CompressionLayer::new()
                .quality(tower_http::CompressionLevel::Fastest)
                .compress_when(
                    tower_http::compression::predicate::SizeAbove::new(COMPRESS_ABOVE_BYTES)
                        .and(tower_http::compression::predicate::NotForContentType::GRPC)
                        .and(tower_http::compression::predicate::NotForContentType::IMAGES)
                        .and(tower_http::compression::predicate::NotForContentType::SSE),
                ),
        )
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "no such route", None) })
        .with_state(state)
}

/// Middleware: a path or query with a NUL character (`%00`) is 400 naming
/// the parameter. No id or filter holds one, and PostgreSQL cannot even
/// compare text with NUL (it used to answer 503), so both stores refuse it
/// alike, before anything is looked up.
async fn refuse_nul_in_url(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let uri = request.uri();
    let field = if uri.path().contains("%00") {
        Some("id".to_owned())
    } else {
        uri.query().and_then(|query| {
            query
                .split('&')
                .find(|pair| pair.contains("%00"))
                .map(|pair| {
                    let name = pair.split('=').next().unwrap_or_default();
                    percent_decode(name)
                })
        })
    };
    match field {
        Some(field) => problem(
            StatusCode::BAD_REQUEST,
            "must not contain a NUL character (%00)",
            Some(&field),
        ),
        None => next.run(request).await,
    }
}

/// `%XX` escapes and `+` decoded, invalid UTF-8 replaced (for naming a field).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).replace('\0', "")
}

/// Middleware: a JSON body with a NUL character (`\u0000`) in any string is
/// 422 naming the field (`problem.zones[1].id`, `[0].name`): no stored text
/// may hold one, as PostgreSQL refuses it (it used to answer 503) and SQLite
/// would keep it. The body is read within the same 2 MiB limit as handlers'.
async fn refuse_nul_in_body(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::extract::FromRequest;
    if !matches!(
        *request.method(),
        axum::http::Method::POST | axum::http::Method::PUT | axum::http::Method::PATCH
    ) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::Bytes::from_request(
        axum::extract::Request::from_parts(parts.clone(), body),
        &(),
    )
    .await
    {
        Ok(bytes) => bytes,
        Err(e) => return problem(e.status(), e.body_text(), None),
    };
    // Only a body with the escape can hold a NUL (raw NUL is not JSON).
    if bytes.windows(6).any(|w| w == b"\\u0000") {
        if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
            if let Some(field) = nul_field(&value, String::new()) {
                return problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "text must not contain a NUL character (\\u0000)",
                    Some(&field),
                );
            }
        }
    }
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// The path of the first string (value or key) in `value` holding a NUL.
fn nul_field(value: &Value, path: String) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(k, v)| nul_field(v, format!("{path}[{k}]"))),
        Value::Object(fields) => fields.iter().find_map(|(key, v)| {
            let here = if path.is_empty() {
                key.replace('\0', "")
            } else {
                format!("{path}.{}", key.replace('\0', ""))
            };
            if key.contains('\0') {
                Some(here)
            } else {
                nul_field(v, here)
            }
        }),
        _ => None,
    }
}

/// An RFC 7807 problem document.
pub(crate) fn problem(
    status: StatusCode,
    detail: impl Into<String>,
    field: Option<&str>,
) -> Response {
    let mut body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    if let Some(field) = field {
        body["field"] = json!(field);
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::NotFound => problem(StatusCode::NOT_FOUND, "no such resource", None),
        StoreError::Conflict { .. } => problem(StatusCode::CONFLICT, e.to_string(), Some("status")),
        StoreError::Refused(why) => problem(StatusCode::CONFLICT, why, None),
        e => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), None),
    }
}

pub(crate) fn bad_json(e: JsonRejection) -> Response {
    let status = match e {
        JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    // serde's message names the path, e.g. "fleet_id: invalid type: …".
    let text = e.body_text();
    let field = text
        .split_once(": ")
        .and_then(|(_, rest)| rest.split_once(": "))
        .map(|(path, _)| path.to_owned());
    problem(status, text, field.as_deref())
}

#[utoipa::path(get, path = "/health", tag = "service", security(()),
    responses((status = 200, description = "Dependencies up (database ok; redis ok or embedded)"),
              (status = 503, description = "A dependency is down")))]
async fn health(State(state): State<AppState>) -> Response {
    let database = if state.store.ping().await {
        "ok"
    } else {
        "down"
    };
    let redis = match (state.cache.kind(), state.cache.ping().await) {
        ("embedded", _) => "embedded",
        (_, true) => "ok",
        (_, false) => "down",
    };
    let mut dependencies = json!({
        "database": database,
        "redis": redis,
        "kafka": "embedded",
        "clickhouse": "embedded",
    });
    for (name, check) in &state.checks {
        dependencies[*name] = json!(check().await);
    }
    // Healthy only when every dependency answers (or is embedded): a
    // pipeline retrying its writes is degraded too.
    let healthy = dependencies
        .as_object()
        .is_some_and(|d| d.values().all(|v| v == "ok" || v == "embedded"));
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "dependencies": dependencies,
    });
    (status, Json(body)).into_response()
}

/// Answers with the document `load` produces, caching it under `key` if
/// `cacheable` (a finished run's documents no longer change; writers
/// invalidate what they do change).
async fn cached_json<F>(state: &AppState, key: &str, cacheable: bool, load: F) -> Response
where
    F: std::future::Future<Output = Result<Value, Response>>,
{
    match load.await {
        Ok(value) => {
            let text = value.to_string();
            if cacheable {
                state.cache.set(key, &text).await;
            }
            json_text_response(text)
        }
        Err(response) => response,
    }
}

/// The body of `POST /runs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateRun {
    #[schema(min_length = 1, max_length = 200)]
    fleet_id: String,
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    #[serde(default = "one_shot")]
    mode: RunMode,
    #[serde(default)]
    objectives: Option<ObjectiveWeights>,
    #[serde(default)]
    constraints: Option<Constraints>,
    #[serde(default)]
    horizon: Option<HorizonSettings>,
    /// The problem file (DESIGN.md 2.1): required for a `one_shot` run until
    /// live zone state is available; a `continuous` run takes none.
    #[serde(default)]
    #[schema(value_type = Option<fleet_engine::problem_file::ProblemFile>)]
    problem: Option<Value>,
}

impl CreateRun {
    fn spec(&self) -> RunSpec {
        RunSpec {
            objectives: self.objectives,
            constraints: self.constraints,
            horizon: self.horizon,
            problem: self.problem.clone(),
        }
    }
}

fn one_shot() -> RunMode {
    RunMode::OneShot
}

#[utoipa::path(post, path = "/api/v1/fleet-optimization/runs", tag = "runs", request_body = CreateRun,
    responses((status = 201, description = "Created; executes asynchronously", body = Run),
              (status = 400, description = "Malformed JSON or wrong types", body = ProblemDoc),
              (status = 413, description = "Body too large", body = ProblemDoc),
              (status = 422, description = "Semantically invalid (field named)", body = ProblemDoc)))]
async fn create_run(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateRun>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    for (field, value) in [("fleet_id", &body.fleet_id), ("name", &body.name)] {
        if value.trim().is_empty() || value.chars().count() > 200 {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "must be 1 to 200 characters",
                Some(field),
            );
        }
    }
    if let Err(response) = caller.admit(&body.fleet_id, "fleet_id") {
        return response;
    }
    if body.mode == RunMode::Continuous {
        return create_continuous_run(&state, body).await;
    }
    // Validate now, so a bad spec is a 422 naming the field and nothing is stored.
    let spec = body.spec();
    if let Err(e) = spec.prepare() {
        return problem(StatusCode::UNPROCESSABLE_ENTITY, e.message, Some(&e.field));
    }
    let spec = match serde_json::to_value(&spec) {
        Ok(v) => v,
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None),
    };
    let new = NewRun {
        fleet_id: body.fleet_id,
        name: body.name,
        mode: body.mode,
        spec,
    };
    let run = match state.store.create_run(new).await {
        Ok(run) => run,
        Err(e) => return store_error(e),
    };
    tokio::spawn(execute(state.clone(), run.id.clone()));
    let location = format!("{BASE}/runs/{}", run.id);
    (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(run),
    )
        .into_response()
}

/// A continuous run: live rebalancing of a fleet from the streaming
/// pipeline's windows (its results and recommendations are the pipeline's).
/// It starts `running` and replaces the fleet's earlier continuous run.
async fn create_continuous_run(state: &AppState, body: CreateRun) -> Response {
    if !state.streaming {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "continuous runs need the streaming pipeline, which is off in this service (started with --pipeline off)",
            Some("mode"),
        );
    }
    if body.problem.is_some() || body.horizon.is_some() {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a continuous run plans from live telemetry: drop `problem` and `horizon`",
            Some(if body.problem.is_some() {
                "problem"
            } else {
                "horizon"
            }),
        );
    }
    let new = NewRun {
        fleet_id: body.fleet_id,
        name: body.name,
        mode: RunMode::Continuous,
        spec: json!({"source": "pipeline"}),
    };
    let run = match state.store.create_run(new).await {
        Ok(run) => run,
        Err(e) => return store_error(e),
    };
    let run = match state
        .store
        .transition(&run.id, RunStatus::Running, None)
        .await
    {
        Ok(run) => run,
        Err(e) => return store_error(e),
    };
    let location = format!("{BASE}/runs/{}", run.id);
    (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(run),
    )
        .into_response()
}

/// Runs the engine for a stored run, on a worker slot, and stores the outcome.
pub async fn execute(state: AppState, id: String) {
    let Ok(_slot) = state.workers.clone().acquire_owned().await else {
        return;
    };
    // Cancelled (or deleted) while waiting: nothing to do.
    let Ok(run) = state.store.transition(&id, RunStatus::Running, None).await else {
        return;
    };
    let fleet_id = run.fleet_id.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let prepared = stored_spec(&run).prepare().map_err(|e| e.to_string())?;
        solve::solve(&prepared, &run.id, &run.fleet_id)
    })
    .await;
    let result = match outcome {
        Ok(Ok(out)) => state
            .store
            .save_outcome(&id, out.objective, &out.report, &out.recommendations)
            .await
            .map(|()| out.measured)
            .map_err(|e| e.to_string()),
        Ok(Err(message)) => Err(message),
        Err(panic) => Err(format!("solver task failed: {panic}")),
    };
    let solve_seconds = result.as_ref().ok().and_then(|m| {
        m.iter()
            .find(|(name, _)| *name == "optimization_execution_time_ms")
            .map(|(_, ms)| ms / 1e3)
    });
    telemetry::record_run(result.is_ok(), solve_seconds);
    // The seed's metrics, written by the service itself as the same points
    // operators ingest.
    record_metric(
        &state,
        "optimization_success",
        if result.is_ok() { 1.0 } else { 0.0 },
        &fleet_id,
    )
    .await;
    for (name, value) in result.as_deref().unwrap_or_default() {
        record_metric(&state, name, *value, &fleet_id).await;
    }
    let _ = match result {
        Ok(_) => {
            state
                .store
                .transition(&id, RunStatus::Succeeded, None)
                .await
        }
        Err(message) => {
            state
                .store
                .transition(&id, RunStatus::Failed, Some(&message))
                .await
        }
    };
}

/// Writes one built-in metric point; a metric that cannot be written must
/// not fail what is being measured.
async fn record_metric(state: &AppState, name: &str, value: f64, fleet_id: &str) {
    let point = MetricPoint {
        name: name.into(),
        value,
        fleet_id: Some(fleet_id.to_owned()),
        ts: now_ms(),
        labels: serde_json::Map::new(),
    };
    if state.store.insert_metrics(&[point]).await.is_ok() {
        state.cache.bump(METRICS_SCOPE).await;
        telemetry::record_point(name, fleet_id, value);
    }
}

/// A stored run's spec; one that no longer parses (written by an older
/// version) solves as nothing, failing the run with a clear message.
fn stored_spec(run: &Run) -> RunSpec {
    serde_json::from_value(run.spec.clone()).unwrap_or_default()
}

#[utoipa::path(get, path = "/api/v1/fleet-optimization/runs/{id}", tag = "runs", params(("id" = String, Path, description = "Run id")),
    responses((status = 200, body = Run), (status = 404, body = ProblemDoc)))]
async fn get_run(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    // A finished run no longer changes (only deletion, which invalidates).
    let key = run_key(&id);
    if let Some(text) = state.cache.get(&key).await {
        return json_text_response(text);
    }
    match state.store.get_run(&id).await {
        Ok(run) => {
            let final_run = run.status.is_final();
            let load = async {
                serde_json::to_value(&run)
                    .map_err(|e| problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None))
            };
            cached_json(&state, &key, final_run, load).await
        }
        Err(e) => store_error(e),
    }
}

/// The query of a list endpoint, checked: page size and a status that
/// `parse` (the resource's status parser) knows.
#[allow(clippy::result_large_err)] // the error is the response itself, returned at once
fn list_params<S>(
    query: Result<Query<ListQuery>, QueryRejection>,
    parse: fn(&str) -> Option<S>,
    what: &str,
) -> Result<(ListQuery, usize, Option<S>), Response> {
    let Query(q) =
        query.map_err(|e| problem(StatusCode::BAD_REQUEST, e.body_text(), Some("limit")))?;
    let limit = page_limit(q.limit)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(parse(s).ok_or_else(|| {
            problem(
                StatusCode::BAD_REQUEST,
                format!("not a {what} status"),
                Some("status"),
            )
        })?),
    };
    Ok((q, limit, status))
}

/// A page of a list as `{items, next_cursor}`; an unknown cursor is the caller's error.
pub(crate) fn page_response<T: serde::Serialize>(
    page: Result<crate::store::Page<T>, StoreError>,
) -> Response {
    match page {
        Ok(page) => {
            Json(json!({"items": page.items, "next_cursor": page.next_cursor})).into_response()
        }
        Err(StoreError::NotFound) => problem(
            StatusCode::BAD_REQUEST,
            "not a cursor this service issued",
            Some("cursor"),
        ),
        Err(e) => store_error(e),
    }
}

/// The page size asked for (default 50), or the problem to answer with.
#[allow(clippy::result_large_err)] // the error is the response itself, returned at once
pub(crate) fn page_limit(limit: Option<usize>) -> Result<usize, Response> {
    match limit.unwrap_or(50) {
        limit @ 1..=MAX_LIMIT => Ok(limit),
        _ => Err(problem(
            StatusCode::BAD_REQUEST,
            format!("must be between 1 and {MAX_LIMIT}"),
            Some("limit"),
        )),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    fleet_id: Option<String>,
    status: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// `next_cursor` of the page before.
    #[param(min_length = 1)]
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/fleet-optimization/runs", tag = "runs", params(ListQuery),
    responses((status = 200, description = "`{items: [Run], next_cursor}`"), (status = 400, body = ProblemDoc)))]
async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let (mut q, limit, status) = match list_params(query, RunStatus::parse, "run") {
        Ok(params) => params,
        Err(response) => return response,
    };
    q.fleet_id = match caller.list_fleet(q.fleet_id) {
        Ok(fleet) => fleet,
        Err(response) => return response,
    };
    // Pages are cached under the generation of their fleet's (or all
    // fleets') runs, which every run write bumps (`Store::with_cache`).
    let scope = runs_scope(q.fleet_id.as_deref());
    let key = state.cache.generation(&scope).await.map(|generation| {
        let query = json!([status.map(RunStatus::as_str), limit, q.cursor]).to_string();
        runs_list_key(&scope, generation, &query)
    });
    if let Some(key) = &key {
        if let Some(text) = state.cache.get(key).await {
            return json_text_response(text);
        }
    }
    let page = state
        .store
        .list_runs(q.fleet_id.as_deref(), status, limit, q.cursor.as_deref())
        .await;
    match (page, key) {
        (Ok(page), Some(key)) => {
            let text = json!({"items": page.items, "next_cursor": page.next_cursor}).to_string();
            state.cache.set(&key, &text).await;
            json_text_response(text)
        }
        (page, _) => page_response(page),
    }
}

/// A 200 answer with a JSON document already serialised.
fn json_text_response(text: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response()
}

/// The body of `PUT /runs/{id}`: cancel (`status: cancelled`), or edit a
/// pending run's name and spec (fields not given keep their value).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateRun {
    #[serde(default)]
    status: Option<RunStatus>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    #[serde(default)]
    objectives: Option<ObjectiveWeights>,
    #[serde(default)]
    constraints: Option<Constraints>,
    #[serde(default)]
    horizon: Option<HorizonSettings>,
    #[serde(default)]
    #[schema(value_type = Option<fleet_engine::problem_file::ProblemFile>)]
    problem: Option<Value>,
}

#[utoipa::path(put, path = "/api/v1/fleet-optimization/runs/{id}", tag = "runs", params(("id" = String, Path)), request_body = UpdateRun,
    responses((status = 200, body = Run), (status = 404, body = ProblemDoc), (status = 409, description = "Illegal state change", body = ProblemDoc),
              (status = 422, body = ProblemDoc)))]
async fn update_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<UpdateRun>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    let edits = body.name.is_some()
        || body.objectives.is_some()
        || body.constraints.is_some()
        || body.horizon.is_some()
        || body.problem.is_some();
    match (body.status, edits) {
        (Some(RunStatus::Cancelled), false) => {
            return match state.store.transition(&id, RunStatus::Cancelled, None).await {
                Ok(run) => Json(run).into_response(),
                Err(e) => store_error(e),
            }
        }
        (Some(_), _) => {
            return problem(
                StatusCode::CONFLICT,
                "a client may only cancel a run (alone) or edit a pending one; the service moves it through its other states",
                Some("status"),
            )
        }
        (None, false) => return problem(StatusCode::UNPROCESSABLE_ENTITY, "nothing to change", None),
        (None, true) => {}
    }
    if let Some(name) = &body.name {
        if name.trim().is_empty() || name.chars().count() > 200 {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "must be 1 to 200 characters",
                Some("name"),
            );
        }
    }
    let run = match state.store.get_run(&id).await {
        Ok(run) => run,
        Err(e) => return store_error(e),
    };
    let edit = RunSpec {
        objectives: body.objectives,
        constraints: body.constraints,
        horizon: body.horizon,
        problem: body.problem,
    };
    let spec = stored_spec(&run).overridden_by(&edit);
    if let Err(e) = spec.prepare() {
        return problem(StatusCode::UNPROCESSABLE_ENTITY, e.message, Some(&e.field));
    }
    let spec = match serde_json::to_value(&spec) {
        Ok(v) => v,
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None),
    };
    let name = body.name.unwrap_or(run.name);
    match state.store.edit_pending_run(&id, &name, &spec).await {
        Ok(run) => Json(run).into_response(),
        Err(e) => store_error(e),
    }
}

#[utoipa::path(delete, path = "/api/v1/fleet-optimization/runs/{id}", tag = "runs", params(("id" = String, Path)),
    responses((status = 204, description = "Cancelled if active, then removed"), (status = 404, body = ProblemDoc)))]
async fn delete_run(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    // Cancel first if still active, so a waiting worker does not start it.
    if let Ok(run) = state.store.get_run(&id).await {
        if !run.status.is_final() {
            let _ = state
                .store
                .transition(&id, RunStatus::Cancelled, None)
                .await;
        }
    }
    match state.store.delete_run(&id).await {
        Ok(()) => {
            state
                .cache
                .invalidate(&[run_key(&id), results_key(&id), recommendations_key(&id)])
                .await;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => store_error(e),
    }
}

#[utoipa::path(get, path = "/api/v1/fleet-optimization/runs/{id}/results", tag = "runs", params(("id" = String, Path)),
    responses((status = 200, description = "`{run_id, objective, report}`: objectives, Pareto front, stats"),
              (status = 404, description = "No such run, or the run has no result yet: it is pending or running \
                  (runs execute asynchronously), or a continuous run before its first window", body = ProblemDoc)))]
async fn get_results(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    run_document(&state, &id, &results_key(&id), |store, id| async move {
        match store.get_result(&id).await {
            Ok((objective, report)) => {
                Ok(json!({"run_id": id, "objective": objective, "report": report}))
            }
            Err(StoreError::NotFound) => Err(problem(
                StatusCode::NOT_FOUND,
                "the run has no result yet",
                None,
            )),
            Err(e) => Err(store_error(e)),
        }
    })
    .await
}

/// The body of `POST /runs/{id}/results`: a what-if. The given parts replace
/// the run's own (weights, limits, horizon) for one solve of the run's problem.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WhatIf {
    #[serde(default)]
    objectives: Option<ObjectiveWeights>,
    #[serde(default)]
    constraints: Option<Constraints>,
    #[serde(default)]
    horizon: Option<HorizonSettings>,
}

#[utoipa::path(post, path = "/api/v1/fleet-optimization/runs/{id}/results", tag = "runs",
    params(("id" = String, Path)), request_body = WhatIf,
    responses((status = 200, description = "`{run_id, what_if: true, objective, report, stored_objective}`: the run's problem solved with the given \
        weights/limits/horizon, next to the stored result's objective (null if none). Nothing is stored."),
              (status = 400, body = ProblemDoc), (status = 404, body = ProblemDoc), (status = 422, body = ProblemDoc),
              (status = 503, description = "Took longer than the request time limit", body = ProblemDoc)))]
async fn what_if_results(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<WhatIf>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    let run = match state.store.get_run(&id).await {
        Ok(run) => run,
        Err(e) => return store_error(e),
    };
    let what_if = RunSpec {
        objectives: body.objectives,
        constraints: body.constraints,
        horizon: body.horizon,
        problem: None,
    };
    let prepared = match stored_spec(&run).overridden_by(&what_if).prepare() {
        Ok(p) => p,
        Err(e) => return problem(StatusCode::UNPROCESSABLE_ENTITY, e.message, Some(&e.field)),
    };
    // The same worker slots as runs: a what-if never starves them of CPU.
    // The slot moves into the blocking task, so it stays taken until the
    // solve really ends, even if this request times out first.
    let Ok(slot) = state.workers.clone().acquire_owned().await else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "shutting down", None);
    };
    let (run_id, fleet_id) = (run.id.clone(), run.fleet_id.clone());
    let solved = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        solve::solve(&prepared, &run_id, &fleet_id)
    })
    .await;
    let out = match solved {
        Ok(Ok(out)) => out,
        Ok(Err(message)) => return problem(StatusCode::UNPROCESSABLE_ENTITY, message, None),
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None),
    };
    let stored = state
        .store
        .get_result(&id)
        .await
        .ok()
        .map(|(objective, _)| objective);
    Json(json!({
        "run_id": id,
        "what_if": true,
        "objective": out.objective,
        "report": out.report,
        "recommendations": out.recommendations.iter().map(|r| json!({
            "from_zone": r.from_zone, "to_zone": r.to_zone, "vehicles": r.vehicles,
            "km": r.km, "cost": r.cost, "benefit_per_vehicle": r.benefit_per_vehicle,
            "explanation": r.explanation,
        })).collect::<Vec<_>>(),
        "stored_objective": stored,
    }))
    .into_response()
}

#[utoipa::path(get, path = "/api/v1/fleet-optimization/runs/{id}/recommendations", tag = "runs", params(("id" = String, Path)),
    responses((status = 200, description = "`{items: [Recommendation]}`"), (status = 404, body = ProblemDoc)))]
async fn get_recommendations(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    run_document(
        &state,
        &id,
        &recommendations_key(&id),
        |store, id| async move {
            match store.list_recommendations(&id).await {
                Ok(items) => Ok(json!({"items": items})),
                Err(e) => Err(store_error(e)),
            }
        },
    )
    .await
}

/// The body of `POST /runs/{id}/recommendations`: an operator's decision
/// on proposed recommendations (accepting happens by creating a rebalancing
/// operation from them).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DecideRecommendations {
    #[schema(min_items = 1)]
    ids: Vec<String>,
    #[schema(value_type = Decision)]
    status: String,
}

/// An operator's decision on proposed recommendations (accepting is
/// creating a rebalancing operation from them).
#[derive(serde::Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // only described: the handler reads the string and names the field
enum Decision {
    Rejected,
    Expired,
}

#[utoipa::path(post, path = "/api/v1/fleet-optimization/runs/{id}/recommendations", tag = "runs",
    params(("id" = String, Path)), request_body = DecideRecommendations,
    responses((status = 200, description = "`{items: [Recommendation]}` after the change"), (status = 404, body = ProblemDoc),
              (status = 409, description = "A recommendation is not proposed (all or none)", body = ProblemDoc),
              (status = 422, body = ProblemDoc)))]
async fn decide_recommendations(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<DecideRecommendations>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    if !matches!(body.status.as_str(), "rejected" | "expired") {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`rejected` or `expired` (accept by creating a rebalancing operation)",
            Some("status"),
        );
    }
    if body.ids.is_empty() {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "at least one recommendation id",
            Some("ids"),
        );
    }
    if let Err(e) = state.store.get_run(&id).await {
        return store_error(e);
    }
    if let Err(e) = state
        .store
        .decide_recommendations(&id, &body.ids, &body.status)
        .await
    {
        return store_error(e);
    }
    state.cache.invalidate(&[recommendations_key(&id)]).await;
    match state.store.list_recommendations(&id).await {
        Ok(items) => Json(json!({"items": items})).into_response(),
        Err(e) => store_error(e),
    }
}

/// A document of run `id`: from the cache if there (only finished runs'
/// documents are cached, and deleting a run drops them), else `load`ed
/// after checking the run exists, and cached if the run has finished.
async fn run_document<F, Fut>(state: &AppState, id: &str, key: &str, load: F) -> Response
where
    F: FnOnce(Store, String) -> Fut,
    Fut: std::future::Future<Output = Result<Value, Response>>,
{
    if let Some(text) = state.cache.get(key).await {
        return json_text_response(text);
    }
    let run = match state.store.get_run(id).await {
        Ok(run) => run,
        Err(e) => return store_error(e),
    };
    cached_json(
        state,
        key,
        run.status.is_final(),
        load(state.store.clone(), id.to_owned()),
    )
    .await
}

/// The body of `POST /rebalancing`: a run's recommendations, or explicit moves.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateRebalancing {
    #[schema(min_length = 1)]
    fleet_id: String,
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    recommendation_ids: Vec<String>,
    #[serde(default)]
    moves: Vec<PlannedMove>,
}

#[utoipa::path(post, path = "/api/v1/fleet-optimization/rebalancing", tag = "rebalancing", request_body = CreateRebalancing,
    responses((status = 201, body = Rebalancing), (status = 400, body = ProblemDoc),
              (status = 409, description = "A recommendation is taken or unknown", body = ProblemDoc), (status = 422, body = ProblemDoc)))]
async fn create_rebalancing(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateRebalancing>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    if body.fleet_id.trim().is_empty() {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "must not be empty",
            Some("fleet_id"),
        );
    }
    if let Err(response) = caller.admit(&body.fleet_id, "fleet_id") {
        return response;
    }
    match (body.recommendation_ids.is_empty(), body.moves.is_empty()) {
        (true, true) | (false, false) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "give either `recommendation_ids` (of a run) or explicit `moves`, not both",
                Some("recommendation_ids"),
            )
        }
        _ => {}
    }
    if let Some(k) = body
        .moves
        .iter()
        .position(|m| m.vehicles == 0 || m.from == m.to || m.from.is_empty() || m.to.is_empty())
    {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a move needs distinct, non-empty zones and at least one vehicle",
            Some(&format!("moves[{k}]")),
        );
    }
    let created = state
        .store
        .create_rebalancing(
            &body.fleet_id,
            body.run_id.as_deref(),
            &body.recommendation_ids,
            body.moves,
        )
        .await;
    match created {
        Ok((op, runs)) => {
            // Accepted recommendations changed status: their runs' cached lists are stale.
            let stale: Vec<String> = runs.iter().map(|r| recommendations_key(r)).collect();
            state.cache.invalidate(&stale).await;
            // Adoption rate of each touched run: accepted / recommended.
            for run in &runs {
                if let Ok(recs) = state.store.list_recommendations(run).await {
                    let accepted = recs.iter().filter(|r| r.status == "accepted").count();
                    if !recs.is_empty() {
                        let rate = 100.0 * accepted as f64 / recs.len() as f64;
                        record_metric(
                            &state,
                            "recommendation_adoption_rate_pct",
                            rate,
                            &op.fleet_id,
                        )
                        .await;
                    }
                }
            }
            let location = format!("{BASE}/rebalancing/{}", op.id);
            (
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(op),
            )
                .into_response()
        }
        Err(e) => store_error(e),
    }
}

#[utoipa::path(get, path = "/api/v1/fleet-optimization/rebalancing/{id}", tag = "rebalancing", params(("id" = String, Path)),
    responses((status = 200, body = Rebalancing), (status = 404, body = ProblemDoc)))]
async fn get_rebalancing(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.store.get_rebalancing(&id).await {
        Ok(op) => Json(op).into_response(),
        Err(e) => store_error(e),
    }
}

#[utoipa::path(get, path = "/api/v1/fleet-optimization/rebalancing", tag = "rebalancing", params(ListQuery),
    responses((status = 200, description = "`{items: [Rebalancing], next_cursor}`"), (status = 400, body = ProblemDoc)))]
async fn list_rebalancing(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let (mut q, limit, status) = match list_params(query, RebalancingStatus::parse, "rebalancing") {
        Ok(params) => params,
        Err(response) => return response,
    };
    q.fleet_id = match caller.list_fleet(q.fleet_id) {
        Ok(fleet) => fleet,
        Err(response) => return response,
    };
    let page = state
        .store
        .list_rebalancing(q.fleet_id.as_deref(), status, limit, q.cursor.as_deref())
        .await;
    page_response(page)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateRebalancing {
    status: RebalancingStatus,
}

#[utoipa::path(put, path = "/api/v1/fleet-optimization/rebalancing/{id}", tag = "rebalancing", params(("id" = String, Path)), request_body = UpdateRebalancing,
    responses((status = 200, body = Rebalancing), (status = 404, body = ProblemDoc), (status = 409, body = ProblemDoc)))]
async fn update_rebalancing(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<UpdateRebalancing>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    match state.store.transition_rebalancing(&id, body.status).await {
        Ok(op) => Json(op).into_response(),
        Err(StoreError::Refused(why)) => problem(StatusCode::CONFLICT, why, Some("status")),
        Err(e) => store_error(e),
    }
}

#[utoipa::path(delete, path = "/api/v1/fleet-optimization/rebalancing/{id}", tag = "rebalancing", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ProblemDoc)))]
async fn delete_rebalancing(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.store.delete_rebalancing(&id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => store_error(e),
    }
}

/// A point as posted: `ts` is RFC 3339 or epoch milliseconds, default now.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PointIn {
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,200}$")]
    name: String,
    #[schema(minimum = -1e15, maximum = 1e15)]
    value: f64,
    #[serde(default)]
    fleet_id: Option<String>,
    #[serde(default)]
    #[schema(schema_with = point_ts_schema)]
    ts: Option<Value>,
    /// Label values are strings.
    #[serde(default)]
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    labels: serde_json::Map<String, Value>,
}

/// A point's `ts`: an RFC 3339 time, epoch milliseconds, or null (now).
fn point_ts_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(-METRIC_LIMIT))
                .maximum(Some(METRIC_LIMIT)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some("RFC 3339 time or epoch milliseconds; default now."))
        .into()
}

/// `POST /metrics`: one point or an array of points, all or nothing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
enum PointsIn {
    One(PointIn),
    Many(Vec<PointIn>),
}

/// Largest magnitude of a metric point's `value`, of its `ts` in epoch
/// milliseconds (~31,700 years either side of 1970, beyond every RFC 3339
/// time) and of an aggregation bucket in ms. Sums of values and bucket starts
/// then stay within f64 and i64: PostgreSQL refused to add two values near
/// f64::MAX (503), SQLite answered a null sum.
pub const METRIC_LIMIT: f64 = 1e15;

/// Checks a posted point; the error names the field (`[k].name`).
#[allow(clippy::result_large_err)] // the error is the response itself, returned at once
fn check_point(k: usize, p: PointIn) -> Result<MetricPoint, Response> {
    let invalid = |field: &str, detail: &str| {
        problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            detail,
            Some(&format!("[{k}].{field}")),
        )
    };
    let name_ok = !p.name.is_empty()
        && p.name.len() <= 200
        && p.name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.:-".contains(&c));
    if !name_ok {
        return Err(invalid(
            "name",
            "1 to 200 letters, digits, `_`, `.`, `:` or `-`",
        ));
    }
    if !(p.value.is_finite() && p.value.abs() <= METRIC_LIMIT) {
        return Err(invalid("value", "must be a number within ±1e15"));
    }
    if let Some((key, _)) = p.labels.iter().find(|(_, v)| !v.is_string()) {
        return Err(invalid(
            &format!("labels.{key}"),
            "label values must be strings",
        ));
    }
    let ts = match &p.ts {
        None => now_ms(),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|ms| ms.unsigned_abs() <= METRIC_LIMIT as u64)
            .ok_or_else(|| invalid("ts", "epoch milliseconds must be an integer within ±1e15"))?,
        Some(Value::String(s)) => {
            parse_rfc3339(s).ok_or_else(|| invalid("ts", "not an RFC 3339 timestamp"))?
        }
        Some(_) => return Err(invalid("ts", "an RFC 3339 string or epoch milliseconds")),
    };
    Ok(MetricPoint {
        name: p.name,
        value: p.value,
        fleet_id: p.fleet_id,
        ts,
        labels: p.labels,
    })
}

#[utoipa::path(post, path = "/api/v1/fleet-optimization/metrics", tag = "metrics", request_body = PointsIn,
    responses((status = 201, description = "`{accepted: n}`"), (status = 400, body = ProblemDoc), (status = 422, body = ProblemDoc)))]
async fn ingest_metrics(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<PointsIn>, JsonRejection>,
) -> Response {
    let points = match body {
        Ok(Json(PointsIn::One(p))) => vec![p],
        Ok(Json(PointsIn::Many(ps))) => ps,
        Err(e) => return bad_json(e),
    };
    let mut checked = Vec::with_capacity(points.len());
    for (k, p) in points.into_iter().enumerate() {
        let point = match check_point(k, p) {
            Ok(point) => point,
            Err(response) => return response,
        };
        let field = format!("[{k}].fleet_id");
        let admitted = match &point.fleet_id {
            Some(fleet) => caller.admit(fleet, &field),
            // A service-wide point (no fleet) is for callers of all fleets.
            None if caller.fleets == Fleets::All => Ok(()),
            None => Err(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this credential is limited to fleets: give each point a fleet_id",
                Some(&field),
            )),
        };
        if let Err(response) = admitted {
            return response;
        }
        checked.push(point);
    }
    if let Err(e) = state.store.insert_metrics(&checked).await {
        return store_error(e);
    }
    state.cache.bump(METRICS_SCOPE).await;
    (
        StatusCode::CREATED,
        Json(json!({"accepted": checked.len()})),
    )
        .into_response()
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MetricsQuery {
    name: Option<String>,
    fleet_id: Option<String>,
    /// RFC 3339 or epoch milliseconds.
    from: Option<String>,
    /// RFC 3339 or epoch milliseconds (exclusive).
    to: Option<String>,
    /// A duration: a whole number and `ms` (the default), `s`, `m`, `h` or
    /// `d`; more than 0 and at most 1e15 ms.
    #[param(pattern = "^[0-9]+(ms|s|m|h|d)?$")]
    bucket: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// The `from` and `to` of a query, each epoch milliseconds or RFC 3339.
#[allow(clippy::result_large_err)] // the error is the response itself, returned at once
pub(crate) fn time_range(
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Option<i64>, Option<i64>), Response> {
    Ok((time_bound("from", from)?, time_bound("to", to)?))
}

/// A time bound as given in a query: epoch milliseconds or RFC 3339.
#[allow(clippy::result_large_err)] // the error is the response itself, returned at once
fn time_bound(field: &str, value: Option<&str>) -> Result<Option<i64>, Response> {
    match value {
        None => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .or_else(|| parse_rfc3339(s))
            .map(Some)
            .ok_or_else(|| {
                problem(
                    StatusCode::BAD_REQUEST,
                    "an RFC 3339 time or epoch milliseconds",
                    Some(field),
                )
            }),
    }
}

#[utoipa::path(get, path = "/api/v1/fleet-optimization/metrics", tag = "metrics", params(MetricsQuery),
    responses((status = 200, description = "`{points: [MetricPoint]}` or, with `bucket`, `{bucket_ms, buckets: [MetricBucket]}`"), (status = 400, body = ProblemDoc)))]
async fn query_metrics(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<MetricsQuery>, QueryRejection>,
) -> Response {
    let Query(mut q) = match query {
        Ok(q) => q,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text(), None),
    };
    q.fleet_id = match caller.list_fleet(q.fleet_id) {
        Ok(fleet) => fleet,
        Err(response) => return response,
    };
    let (from, to) = match time_range(q.from.as_deref(), q.to.as_deref()) {
        Ok(range) => range,
        Err(response) => return response,
    };
    // Metric reads are cached under the metrics generation, which every
    // write bumps: a cached answer is never older than the last write.
    let canonical = format!(
        "{:?}|{:?}|{from:?}|{to:?}|{:?}|{:?}",
        q.name, q.fleet_id, q.bucket, q.limit
    );
    let generation = state.cache.generation(METRICS_SCOPE).await;
    let key = generation.map(|g| metrics_key(g, &canonical));
    if let Some(key) = &key {
        if let Some(text) = state.cache.get(key).await {
            return json_text_response(text);
        }
    }
    let filter = MetricFilter {
        name: q.name,
        fleet_id: q.fleet_id,
        from,
        to,
    };
    let answer = if let Some(b) = q.bucket.as_deref() {
        let bucket_ms = parse_duration_ms(b).filter(|&ms| ms as f64 <= METRIC_LIMIT);
        let Some(bucket_ms) = bucket_ms else {
            return problem(
                StatusCode::BAD_REQUEST,
                "a duration such as 30s, 5m, 1h or 1d, at most 1e15 ms",
                Some("bucket"),
            );
        };
        match state.store.aggregate_metrics(&filter, bucket_ms).await {
            Ok(buckets) => json!({"bucket_ms": bucket_ms, "buckets": buckets}),
            Err(e) => return store_error(e),
        }
    } else {
        let limit = match page_limit(q.limit) {
            Ok(limit) => limit,
            Err(response) => return response,
        };
        match state.store.query_metrics(&filter, limit).await {
            Ok(points) => json!({"points": points}),
            Err(e) => return store_error(e),
        }
    };
    // The answer depends on stored points only (no implicit "now"), so it
    // stays right until the next write bumps the generation.
    if let Some(key) = &key {
        state.cache.set(key, &answer.to_string()).await;
    }
    Json(answer).into_response()
}

/// Serves `state` on `listener` until `shutdown` resolves (e.g.
/// [`shutdown_signal`]), then finishes the requests in flight. With `tls`,
/// only HTTPS is served.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Option<Arc<crate::tls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let stopping = state.stopping.clone();
    let shutdown = async move {
        shutdown.await;
        stopping.send_replace(true);
    };
    let app = router(state);
    match tls {
        Some(config) => {
            axum::serve(crate::tls::TlsListener::new(listener, config)?, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            // No Nagle delay: a response is written whole and should leave at once.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
