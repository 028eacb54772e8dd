//! Access control, enforced in one place: the [`authorize`] middleware in
//! front of every route. For each request it finds the route's
//! [`RouteRule`], authenticates the caller, applies the rate limit, checks
//! the role's [`Permission`] and the fleet scope, and writes the audit log
//! entry of every state-changing request, whatever its outcome.
//!
//! Fleet scope: a resource named in the path (a run, an operation) is looked
//! up here and is answered 404, exactly like a missing one, when it belongs
//! to a fleet outside the caller's scope, so ids do not leak. A fleet named in
//! a body or query is admitted by the handler through [`Caller::admit`] /
//! [`Caller::list_fleet`], the only two ways a handler reads a fleet.
//!
//! Architecture invariant: a route without a rule here is refused (and the
//! permission-matrix test in `api/tests/access.rs` fails), so a new route is
//! never open by accident.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use sqlx::Row;

use crate::audit::AuditEntry;
use crate::auth::{AuthError, Authenticator, Caller, Fleets, JwtVerifier, Role};
use crate::http::{problem, AppState};
use crate::rate_limit::{RateLimiter, DEFAULT_BURST, DEFAULT_PER_SECOND};
use crate::store::{Store, StoreError};
use crate::telemetry::{log, Level};

/// What a route does, as far as roles are concerned (DESIGN.md section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    ApiDocRead,
    RunsRead,
    RunsWrite,
    RunsDelete,
    ResultsRead,
    ResultsWrite,
    RecommendationsRead,
    RecommendationsWrite,
    RebalancingRead,
    RebalancingWrite,
    RebalancingDelete,
    MetricsRead,
    MetricsWrite,
    KeysManage,
    AuditRead,
    DashboardRead,
}

/// The least role holding each permission: viewers read; operators also
/// create and update runs, results (what-if), recommendations and
/// rebalancing; admins also delete, write metrics, manage keys and read the
/// audit log.
pub fn least_role(permission: Permission) -> Role {
    use Permission::*;
    match permission {
        ApiDocRead | RunsRead | ResultsRead | RecommendationsRead | RebalancingRead
        | MetricsRead | DashboardRead => Role::Viewer,
        RunsWrite | ResultsWrite | RecommendationsWrite | RebalancingWrite => Role::Operator,
        RunsDelete | RebalancingDelete | MetricsWrite | KeysManage | AuditRead => Role::Admin,
    }
}

/// Whether `role` holds `permission`.
pub fn grants(role: Role, permission: Permission) -> bool {
    role >= least_role(permission)
}

/// Where a route's fleet comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FleetOf {
    /// No authentication at all (health, Prometheus).
    Public,
    /// The path's `{id}` is a run: its fleet is looked up here.
    Run,
    /// The path's `{id}` is a rebalancing operation.
    Rebalancing,
    /// The body or query names it; the handler admits it ([`Caller::admit`]).
    Handler,
    /// Not about one fleet (the API document, keys, the audit log).
    Service,
}

/// The access rule of one route.
#[derive(Debug, Clone, Copy)]
pub struct RouteRule {
    pub method: &'static str,
    /// The route as registered, e.g. `/api/v1/fleet-optimization/runs/{id}`.
    pub path: &'static str,
    /// `None` only for [`FleetOf::Public`] routes.
    pub permission: Option<Permission>,
    pub fleet: FleetOf,
}

macro_rules! api {
    ($path:literal) => {
        concat!("/api/v1/fleet-optimization", $path)
    };
}

const fn rule(
    method: &'static str,
    path: &'static str,
    permission: Permission,
    fleet: FleetOf,
) -> RouteRule {
    RouteRule {
        method,
        path,
        permission: Some(permission),
        fleet,
    }
}

const fn public(path: &'static str) -> RouteRule {
    RouteRule {
        method: "GET",
        path,
        permission: None,
        fleet: FleetOf::Public,
    }
}

/// Every route's rule.
pub const ROUTES: &[RouteRule] = {
    use FleetOf::*;
    use Permission::*;
    &[
        public("/health"),
        public("/metrics"),
        public("/metrics/prometheus"),
        // The dashboard's page and assets hold no data; its data routes do.
        public("/"),
        public("/dashboard.js"),
        public("/dashboard.css"),
        rule("GET", "/api/v1/openapi.json", ApiDocRead, Service),
        rule("GET", api!("/runs"), RunsRead, Handler),
        rule("POST", api!("/runs"), RunsWrite, Handler),
        rule("GET", api!("/runs/{id}"), RunsRead, Run),
        rule("PUT", api!("/runs/{id}"), RunsWrite, Run),
        rule("DELETE", api!("/runs/{id}"), RunsDelete, Run),
        rule("GET", api!("/runs/{id}/results"), ResultsRead, Run),
        rule("POST", api!("/runs/{id}/results"), ResultsWrite, Run),
        rule(
            "GET",
            api!("/runs/{id}/recommendations"),
            RecommendationsRead,
            Run,
        ),
        rule(
            "POST",
            api!("/runs/{id}/recommendations"),
            RecommendationsWrite,
            Run,
        ),
        rule("GET", api!("/rebalancing"), RebalancingRead, Handler),
        rule("POST", api!("/rebalancing"), RebalancingWrite, Handler),
        rule(
            "GET",
            api!("/rebalancing/{id}"),
            RebalancingRead,
            Rebalancing,
        ),
        rule(
            "PUT",
            api!("/rebalancing/{id}"),
            RebalancingWrite,
            Rebalancing,
        ),
        rule(
            "DELETE",
            api!("/rebalancing/{id}"),
            RebalancingDelete,
            Rebalancing,
        ),
        rule("GET", api!("/metrics"), MetricsRead, Handler),
        rule("POST", api!("/metrics"), MetricsWrite, Handler),
        rule("GET", api!("/keys"), KeysManage, Service),
        rule("POST", api!("/keys"), KeysManage, Service),
        rule("DELETE", api!("/keys/{id}"), KeysManage, Service),
        rule("GET", api!("/audit"), AuditRead, Service),
        rule("GET", api!("/dashboard"), DashboardRead, Handler),
        rule("GET", api!("/dashboard/events"), DashboardRead, Handler),
    ]
};

/// The rule of `method` on the registered route `path`.
pub fn rule_for(method: &Method, path: &str) -> Option<&'static RouteRule> {
    ROUTES
        .iter()
        .find(|r| r.path == path && r.method == method.as_str())
}

/// What the middleware shares across requests.
pub struct Security {
    pub authenticator: Authenticator,
    pub limiter: RateLimiter,
    /// The fleet of a run or operation never changes: looked up once.
    owners: Mutex<HashMap<(FleetOf, String), String>>,
}

const MAX_OWNERS: usize = 100_000;

impl Security {
    pub fn new(jwt: Option<JwtVerifier>, limiter: RateLimiter) -> Self {
        Security {
            authenticator: Authenticator::new(jwt),
            limiter,
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// The fleet owning the resource `id` of `kind` ([`FleetOf::Run`] or
    /// [`FleetOf::Rebalancing`]), `None` if there is none.
    async fn owner(
        &self,
        store: &Store,
        kind: FleetOf,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let key = (kind, id.to_owned());
        if let Some(fleet) = self.owners.lock().expect("owners").get(&key) {
            return Ok(Some(fleet.clone()));
        }
        let sql = match kind {
            FleetOf::Run => "SELECT fleet_id FROM optimization_runs WHERE id = $1",
            FleetOf::Rebalancing => "SELECT fleet_id FROM fleet_rebalancing WHERE id = $1",
            _ => return Ok(None),
        };
        let row = sqlx::query(sql)
            .bind(id)
            .fetch_optional(&store.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let fleet: String = row.try_get("fleet_id")?;
        let mut owners = self.owners.lock().expect("owners");
        if owners.len() >= MAX_OWNERS {
            owners.clear();
        }
        owners.insert(key, fleet.clone());
        Ok(Some(fleet))
    }
}

impl Default for Security {
    /// API keys only, the default rate limit.
    fn default() -> Self {
        Security::new(None, RateLimiter::new(DEFAULT_PER_SECOND, DEFAULT_BURST))
    }
}

fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "no such resource", None)
}

/// The middleware (see the module documentation).
pub async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    // HEAD is GET without the body (axum answers it with the GET handler).
    let ruled = if method == Method::HEAD {
        Method::GET
    } else {
        method.clone()
    };
    let Some(rule) = rule_for(&ruled, &route) else {
        // A route served with other methods: 405 naming them (RFC 9110),
        // not a missing rule.
        let allowed: Vec<&str> = ROUTES
            .iter()
            .filter(|r| r.path == route)
            .map(|r| r.method)
            .collect();
        if !allowed.is_empty() {
            let mut response = problem(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not served here; use {}", allowed.join(", ")),
                None,
            );
            if let Ok(allow) = HeaderValue::from_str(&allowed.join(", ")) {
                response.headers_mut().insert(header::ALLOW, allow);
            }
            return response;
        }
        log(
            Level::Error,
            "route without an access rule refused",
            serde_json::json!({"method": method.as_str(), "route": route}),
        );
        return problem(
            StatusCode::FORBIDDEN,
            "this route has no access rule, so nobody may use it; this is a bug, please report it",
            None,
        );
    };
    if rule.fleet == FleetOf::Public {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let id = RawPathParams::from_request_parts(&mut parts, &state)
        .await
        .ok()
        .and_then(|params| {
            params
                .iter()
                .find(|(name, _)| *name == "id")
                .map(|(_, v)| v.to_owned())
        });
    let mut audit = AuditEntry {
        id: String::new(),
        at: 0,
        subject: "-".into(),
        role: None,
        credential: "none".into(),
        fleet_id: None,
        // Filled in only for the requests that are audited.
        action: String::new(),
        resource_id: id.clone(),
        outcome: 0,
    };
    let response = match admit(&state, rule, id.as_deref(), &mut parts, &mut audit).await {
        Err(response) => response,
        Ok(caller) => {
            let named = caller.named_fleet.clone();
            parts.extensions.insert(caller);
            let response = next.run(Request::from_parts(parts, body)).await;
            if let Some(fleet) = named.lock().expect("named fleet").take() {
                audit.fleet_id = Some(fleet);
            }
            response
        }
    };
    if method != Method::GET && method != Method::HEAD {
        audit.action = format!("{method} {route}");
        audit.outcome = response.status().as_u16();
        if audit.resource_id.is_none() {
            // A created resource: its id ends the Location header.
            audit.resource_id = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| l.rsplit('/').next())
                .map(str::to_owned);
        }
        if let Err(e) = state.store.record_audit(audit).await {
            // The request already happened; say loudly that its record is missing.
            log(
                Level::Error,
                "audit log write failed",
                serde_json::json!({"error": e.to_string()}),
            );
        }
    }
    response
}

/// Authentication, rate limit, permission and the path's fleet, in that
/// order; fills in `audit` as it learns who is calling.
async fn admit(
    state: &AppState,
    rule: &RouteRule,
    id: Option<&str>,
    parts: &mut Parts,
    audit: &mut AuditEntry,
) -> Result<Caller, Response> {
    let security = &state.security;
    let caller = match security
        .authenticator
        .authenticate(&state.store, &parts.headers)
        .await
    {
        Ok(Some(caller)) => caller,
        Ok(None) => {
            return Err(unauthorized(
                "send `Authorization: Bearer <JWT>` or `X-API-Key: <key>`",
            ))
        }
        Err(AuthError::Invalid(why)) => return Err(unauthorized(&why)),
        Err(AuthError::Unavailable(why)) => {
            return Err(problem(StatusCode::SERVICE_UNAVAILABLE, why, None))
        }
    };
    audit.subject = caller.subject.clone();
    audit.role = Some(caller.role.as_str().to_owned());
    audit.credential = caller.credential.as_str().to_owned();
    if let Err(wait) = security.limiter.check(&caller.limit_key()) {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut response = problem(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many requests with this credential; retry in {seconds} s"),
            None,
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return Err(response);
    }
    // The path's resource, looked up before the permission check so that a
    // refused change is audited under the fleet it targeted.
    let owner = if matches!(rule.fleet, FleetOf::Run | FleetOf::Rebalancing) {
        let owner = security
            .owner(&state.store, rule.fleet, id.unwrap_or_default())
            .await
            .map_err(|e| problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), None))?;
        audit.fleet_id.clone_from(&owner);
        Some(owner)
    } else {
        None
    };
    let permission = rule
        .permission
        .expect("only public routes lack a permission");
    if !grants(caller.role, permission) {
        return Err(problem(
            StatusCode::FORBIDDEN,
            format!(
                "a {} may not do this; it needs the {} role",
                caller.role.as_str(),
                least_role(permission).as_str()
            ),
            None,
        ));
    }
    match owner {
        // Another fleet's resource is answered exactly like a missing one.
        Some(Some(fleet)) if !caller.fleets.allows(&fleet) => return Err(not_found()),
        Some(None) => return Err(not_found()),
        _ => {}
    }
    Ok(caller)
}

fn unauthorized(why: &str) -> Response {
    let mut response = problem(StatusCode::UNAUTHORIZED, why, Some("authorization"));
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

impl Caller {
    /// Admits this request to `fleet` (named in its body), or answers 404
    /// as if the fleet did not exist. `field` names where the fleet came from.
    #[allow(clippy::result_large_err)] // the error is the response itself, returned at once
    pub fn admit(&self, fleet: &str, field: &str) -> Result<(), Response> {
        // Noted either way: a refused write is audited under its target.
        *self.named_fleet.lock().expect("named fleet") = Some(fleet.to_owned());
        if !self.fleets.allows(fleet) {
            return Err(problem(StatusCode::NOT_FOUND, "no such fleet", Some(field)));
        }
        Ok(())
    }

    /// The fleet a list or query covers, given the `fleet_id` asked for:
    /// any (`None`) for callers of all fleets; a scoped caller's only fleet
    /// by default; 404 for a fleet outside the scope; 400 when a caller of
    /// several fleets names none.
    #[allow(clippy::result_large_err)]
    pub fn list_fleet(&self, asked: Option<String>) -> Result<Option<String>, Response> {
        match (&self.fleets, asked) {
            (Fleets::All, asked) => Ok(asked),
            (Fleets::Only(_), Some(fleet)) => {
                self.admit(&fleet, "fleet_id")?;
                Ok(Some(fleet))
            }
            (Fleets::Only(list), None) if list.len() == 1 => {
                self.admit(&list[0], "fleet_id")?;
                Ok(Some(list[0].clone()))
            }
            (Fleets::Only(_), None) => Err(problem(
                StatusCode::BAD_REQUEST,
                "this credential covers several fleets: name one with fleet_id",
                Some("fleet_id"),
            )),
        }
    }
}

/// Handlers take the caller the middleware admitted.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no authenticated caller on a route that needs one; this is a bug",
                None,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_every_permission_is_held_by_admins() {
        for rule in ROUTES {
            match rule.permission {
                Some(p) => assert!(grants(Role::Admin, p), "{rule:?}"),
                None => assert_eq!(rule.fleet, FleetOf::Public, "{rule:?}"),
            }
        }
        assert!(grants(Role::Viewer, Permission::RunsRead));
        assert!(!grants(Role::Viewer, Permission::RunsWrite));
        assert!(grants(Role::Operator, Permission::RebalancingWrite));
        assert!(!grants(Role::Operator, Permission::RunsDelete));
        assert!(!grants(Role::Operator, Permission::KeysManage));
    }

    #[test]
    fn every_route_has_one_rule() {
        for (k, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[k + 1..] {
                assert!(
                    !(a.path == b.path && a.method == b.method),
                    "two rules for {} {}",
                    a.method,
                    a.path
                );
            }
        }
        // The rules' prefix is the one the routes are registered under.
        assert_eq!(api!(""), crate::http::BASE);
    }
}
