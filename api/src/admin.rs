//! Admin endpoints: API keys (`/keys`) and the audit log (`/audit`). Only
//! admins reach them ([`crate::access`]); an admin limited to some fleets
//! sees and manages only keys and entries within those fleets.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use crate::api_keys::ApiKey;
use crate::audit::AuditFilter;
use crate::auth::{Caller, Fleets, Role};
use crate::http::{
    bad_json, page_limit, page_response, problem, store_error, time_range, AppState, ProblemDoc,
    BASE,
};
use crate::store::StoreError;

/// The body of `POST /keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKey {
    /// What the key is for, e.g. `dispatch-service`.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    #[schema(value_type = Role)]
    role: String,
    #[schema(schema_with = crate::api_keys::fleets_schema)]
    fleets: Value,
}

fn key_fleets(key: &ApiKey) -> Fleets {
    Fleets::from_json(&key.fleets).unwrap_or(Fleets::Only(Vec::new()))
}

#[utoipa::path(get, path = "/api/v1/fleet-optimization/keys", tag = "admin",
    responses((status = 200, description = "`{items: [ApiKey]}`: never the secrets"), (status = 403, body = ProblemDoc)))]
pub(crate) async fn list_keys(State(state): State<AppState>, caller: Caller) -> Response {
    match state.store.list_keys().await {
        Ok(keys) => {
            let items: Vec<ApiKey> = keys
                .into_iter()
                .filter(|k| caller.fleets.covers(&key_fleets(k)))
                .collect();
            Json(json!({"items": items})).into_response()
        }
        Err(e) => store_error(e),
    }
}

#[utoipa::path(post, path = "/api/v1/fleet-optimization/keys", tag = "admin", request_body = CreateKey,
    responses((status = 201, description = "`{key, api_key}`: the secret `api_key` is shown only here"),
              (status = 404, description = "A fleet outside the caller's scope", body = ProblemDoc),
              (status = 422, body = ProblemDoc)))]
pub(crate) async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateKey>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "must be 1 to 200 characters",
            Some("name"),
        );
    }
    let Some(role) = Role::parse(&body.role) else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "must be viewer, operator or admin",
            Some("role"),
        );
    };
    let Some(fleets) = Fleets::from_json(&body.fleets) else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "must be \"*\" or a non-empty list of fleet ids",
            Some("fleets"),
        );
    };
    // No key beyond the creator's own fleets.
    if !caller.fleets.covers(&fleets) {
        return problem(StatusCode::NOT_FOUND, "no such fleet", Some("fleets"));
    }
    match state
        .store
        .create_key(name, role, &fleets, &caller.subject)
        .await
    {
        Ok((key, secret)) => (
            StatusCode::CREATED,
            [(header::LOCATION, format!("{BASE}/keys/{}", key.id))],
            Json(json!({"key": key, "api_key": secret})),
        )
            .into_response(),
        Err(e) => store_error(e),
    }
}

#[utoipa::path(delete, path = "/api/v1/fleet-optimization/keys/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, description = "The revoked key", body = ApiKey), (status = 404, body = ProblemDoc)))]
pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    match state.store.get_key(&id).await {
        Ok(key) if caller.fleets.covers(&key_fleets(&key)) => {}
        Ok(_) | Err(StoreError::NotFound) => {
            return problem(StatusCode::NOT_FOUND, "no such key", None)
        }
        Err(e) => return store_error(e),
    }
    match state.store.revoke_key(&id).await {
        Ok(key) => {
            state.security.authenticator.forget_keys();
            Json(key).into_response()
        }
        Err(e) => store_error(e),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    fleet_id: Option<String>,
    /// JWT `sub` or `key:<id>`.
    subject: Option<String>,
    /// RFC 3339 or epoch milliseconds.
    from: Option<String>,
    to: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// `next_cursor` of the page before.
    #[param(min_length = 1)]
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/fleet-optimization/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, description = "`{items: [AuditEntry], next_cursor}` in time order"), (status = 400, body = ProblemDoc)))]
pub(crate) async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text(), None),
    };
    let fleet_id = match caller.list_fleet(q.fleet_id) {
        Ok(fleet) => fleet,
        Err(response) => return response,
    };
    let (from, to) = match time_range(q.from.as_deref(), q.to.as_deref()) {
        Ok(range) => range,
        Err(response) => return response,
    };
    let limit = match page_limit(q.limit) {
        Ok(limit) => limit,
        Err(response) => return response,
    };
    let filter = AuditFilter {
        fleet_id,
        subject: q.subject,
        from,
        to,
    };
    page_response(
        state
            .store
            .list_audit(&filter, limit, q.cursor.as_deref())
            .await,
    )
}
