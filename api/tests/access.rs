//! Access control against the real service on a random port, on a real
//! SQLite file and the real PostgreSQL server: the permission matrix (every
//! route x role x own/other fleet x JWT/API key/none, from one table),
//! negative token tests, API key lifecycle, rate limits and the audit log.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fleet_api::access::{Security, ROUTES};
use fleet_api::auth::{Fleets, JwtVerifier, Role};
use fleet_api::http::{AppState, BASE};
use fleet_api::rate_limit::RateLimiter;
use fleet_api::rebalancing::PlannedMove;
use fleet_api::run::RunMode;
use fleet_api::store::{new_id, NewRun, Store};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

mod common;
use common::{admin_client, spawn, stores};

/// HS256 secret of the tests (>= 32 bytes, as the service demands).
const SECRET: &[u8] = b"access-test-secret-0123456789abcdef";
const RS_PRIVATE: &[u8] = include_bytes!("fixtures/jwt-rs256-private.pem");
const RS_PUBLIC: &[u8] = include_bytes!("fixtures/jwt-rs256-public.pem");

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn rs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(RS_PRIVATE).unwrap(),
    )
    .unwrap()
}

fn claims(role: Role, fleets: Value) -> Value {
    json!({"sub": format!("user-{}", role.as_str()), "role": role.as_str(), "fleets": fleets, "exp": now() + 600})
}

/// base64url without padding (to hand-craft tokens the library refuses to make).
fn b64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn manhattan() -> Value {
    serde_json::from_str(include_str!("../../examples/manhattan.json")).unwrap()
}

/// The resources of one fleet a request can name.
struct Fixture {
    fleet: String,
    /// A solved run with recommendations.
    done_run: String,
    rec_id: String,
    /// A run nobody executes: stays pending, so it can be edited.
    pending_run: String,
    rebalancing: String,
    key_id: String,
}

async fn fixture(store: &Store, base: &str, fleet: &str) -> Fixture {
    let admin = admin_client();
    let created: Value = admin
        .post(format!("{base}{BASE}/runs"))
        .json(&json!({"fleet_id": fleet, "name": "fixture", "problem": manhattan()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let done_run = created["id"].as_str().unwrap().to_owned();
    let rec_id = loop {
        let run: Value = admin
            .get(format!("{base}{BASE}/runs/{done_run}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if run["status"] == "succeeded" {
            let recs: Value = admin
                .get(format!("{base}{BASE}/runs/{done_run}/recommendations"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            break recs["items"][0]["id"].as_str().unwrap().to_owned();
        }
        assert!(
            run["status"] == "pending" || run["status"] == "running",
            "{run}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let pending_run = store
        .create_run(NewRun {
            fleet_id: fleet.into(),
            name: "pending".into(),
            mode: RunMode::OneShot,
            spec: json!({"problem": manhattan()}),
        })
        .await
        .unwrap()
        .id;
    let (op, _) = store
        .create_rebalancing(
            fleet,
            None,
            &[],
            vec![PlannedMove {
                from: "a".into(),
                to: "b".into(),
                vehicles: 1,
            }],
        )
        .await
        .unwrap();
    let (key, _) = store
        .create_key(
            "fixture",
            Role::Viewer,
            &Fleets::Only(vec![fleet.into()]),
            "test",
        )
        .await
        .unwrap();
    Fixture {
        fleet: fleet.into(),
        done_run,
        rec_id,
        pending_run,
        rebalancing: op.id,
        key_id: key.id,
    }
}

/// THE table: every route, the least role that may use it (`None`: public),
/// whether it concerns one fleet (then another fleet's is 404), and the
/// status of a successful request.
const MATRIX: &[(&str, &str, Option<Role>, bool, u16)] = {
    use Role::*;
    &[
        ("GET", "/health", None, false, 200),
        ("GET", "/metrics", None, false, 200),
        ("GET", "/metrics/prometheus", None, false, 200),
        ("GET", "/", None, false, 200),
        ("GET", "/dashboard.js", None, false, 200),
        ("GET", "/dashboard.css", None, false, 200),
        ("GET", "/api/v1/openapi.json", Some(Viewer), false, 200),
        ("GET", "{BASE}/runs", Some(Viewer), true, 200),
        ("POST", "{BASE}/runs", Some(Operator), true, 201),
        ("GET", "{BASE}/runs/{id}", Some(Viewer), true, 200),
        ("PUT", "{BASE}/runs/{id}", Some(Operator), true, 200),
        ("DELETE", "{BASE}/runs/{id}", Some(Admin), true, 204),
        ("GET", "{BASE}/runs/{id}/results", Some(Viewer), true, 200),
        (
            "POST",
            "{BASE}/runs/{id}/results",
            Some(Operator),
            true,
            200,
        ),
        (
            "GET",
            "{BASE}/runs/{id}/recommendations",
            Some(Viewer),
            true,
            200,
        ),
        (
            "POST",
            "{BASE}/runs/{id}/recommendations",
            Some(Operator),
            true,
            200,
        ),
        ("GET", "{BASE}/rebalancing", Some(Viewer), true, 200),
        ("POST", "{BASE}/rebalancing", Some(Operator), true, 201),
        ("GET", "{BASE}/rebalancing/{id}", Some(Viewer), true, 200),
        ("PUT", "{BASE}/rebalancing/{id}", Some(Operator), true, 200),
        ("DELETE", "{BASE}/rebalancing/{id}", Some(Admin), true, 204),
        ("GET", "{BASE}/metrics", Some(Viewer), true, 200),
        ("POST", "{BASE}/metrics", Some(Admin), true, 201),
        ("GET", "{BASE}/keys", Some(Admin), false, 200),
        ("POST", "{BASE}/keys", Some(Admin), true, 201),
        ("DELETE", "{BASE}/keys/{id}", Some(Admin), true, 200),
        ("GET", "{BASE}/audit", Some(Admin), true, 200),
        ("GET", "{BASE}/dashboard", Some(Viewer), true, 200),
        ("GET", "{BASE}/dashboard/events", Some(Viewer), true, 200),
    ]
};

fn route(template: &str) -> String {
    template.replace("{BASE}", BASE)
}

/// The concrete request for `method template` on `fx`'s resources.
fn request(method: &str, template: &str, fx: &Fixture) -> (String, Option<Value>) {
    let fleet = &fx.fleet;
    let path = route(template);
    let with = |id: &str| path.replace("{id}", id);
    let query = format!("{path}?fleet_id={fleet}");
    match (method, template) {
        (
            "GET",
            "{BASE}/runs"
            | "{BASE}/rebalancing"
            | "{BASE}/metrics"
            | "{BASE}/audit"
            | "{BASE}/dashboard"
            | "{BASE}/dashboard/events",
        ) => (query, None),
        ("POST", "{BASE}/runs") => (
            path,
            Some(json!({"fleet_id": fleet, "name": "matrix", "problem": manhattan()})),
        ),
        ("PUT", "{BASE}/runs/{id}") => (with(&fx.pending_run), Some(json!({"name": "renamed"}))),
        ("POST", "{BASE}/runs/{id}/results") => (with(&fx.done_run), Some(json!({}))),
        ("POST", "{BASE}/runs/{id}/recommendations") => (
            with(&fx.done_run),
            Some(json!({"ids": [fx.rec_id], "status": "rejected"})),
        ),
        (_, t) if t.starts_with("{BASE}/runs/{id}") => (with(&fx.done_run), None),
        ("POST", "{BASE}/rebalancing") => (
            path,
            Some(json!({"fleet_id": fleet, "moves": [{"from": "x", "to": "y", "vehicles": 2}]})),
        ),
        ("PUT", "{BASE}/rebalancing/{id}") => (
            with(&fx.rebalancing),
            Some(json!({"status": "in_progress"})),
        ),
        (_, "{BASE}/rebalancing/{id}") => (with(&fx.rebalancing), None),
        ("POST", "{BASE}/metrics") => (
            path,
            Some(json!([{"name": "matrix_metric", "value": 1.0, "fleet_id": fleet}])),
        ),
        ("POST", "{BASE}/keys") => (
            path,
            Some(json!({"name": "matrix", "role": "viewer", "fleets": [fleet]})),
        ),
        (_, "{BASE}/keys/{id}") => (with(&fx.key_id), None),
        _ => (path, None),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cred {
    Jwt,
    Key,
    None,
}

/// The status the table says `role` with `cred` gets on a route, for its
/// own fleet's resources or another's.
fn expected(row: &(&str, &str, Option<Role>, bool, u16), role: Role, cred: Cred, own: bool) -> u16 {
    let (_, _, least, fleet_bound, ok) = *row;
    match least {
        None => ok,
        Some(_) if cred == Cred::None => 401,
        Some(least) if role < least => 403,
        Some(_) if fleet_bound && !own => 404,
        Some(_) => ok,
    }
}

/// Every route of the service: the OpenAPI document's operations and the
/// access rules (which also cover the routes outside the document).
async fn service_routes(base: &str) -> Vec<(String, String)> {
    let doc: Value = admin_client()
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut routes: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .chain(
            ROUTES
                .iter()
                .map(|r| (r.method.to_owned(), r.path.to_owned())),
        )
        .collect();
    routes.sort();
    routes.dedup();
    routes
}

#[tokio::test]
async fn permission_matrix_every_route_role_fleet_and_credential() {
    for store in stores().await {
        let security = Security::new(
            Some(JwtVerifier::hs256(SECRET).unwrap()),
            RateLimiter::new(1e6, 1e6),
        );
        let base = spawn(AppState::new(store.clone(), 2).with_security(security)).await;

        // No route is forgotten: the table covers exactly the service's routes.
        let mut table: Vec<(String, String)> = MATRIX
            .iter()
            .map(|(m, t, ..)| (m.to_string(), route(t)))
            .collect();
        table.sort();
        assert_eq!(
            service_routes(&base).await,
            table,
            "the permission matrix must have one row per route"
        );

        let run = new_id();
        let (own, other) = (format!("own-{run}"), format!("other-{run}"));
        let theirs = fixture(&store, &base, &other).await;
        let shared = fixture(&store, &base, &own).await;
        let scope = json!([own]);
        let mut keys = Vec::new();
        for role in Role::ALL {
            let (_, secret) = store
                .create_key("matrix", role, &Fleets::Only(vec![own.clone()]), "test")
                .await
                .unwrap();
            keys.push(secret);
        }
        let client = Client::new();
        let mut checked = 0;
        for row in MATRIX {
            let (method, template, ..) = *row;
            for (r, role) in Role::ALL.into_iter().enumerate() {
                for cred in [Cred::Jwt, Cred::Key, Cred::None] {
                    for mine in [true, false] {
                        let want = expected(row, role, cred, mine);
                        // A request that will change things gets its own resources.
                        let fresh;
                        let fx = if mine && want < 300 && method != "GET" {
                            fresh = fixture(&store, &base, &own).await;
                            &fresh
                        } else if mine {
                            &shared
                        } else {
                            &theirs
                        };
                        let (path, body) = request(method, template, fx);
                        let mut req = client.request(
                            Method::from_bytes(method.as_bytes()).unwrap(),
                            format!("{base}{path}"),
                        );
                        req = match cred {
                            Cred::Jwt => req.bearer_auth(hs256(&claims(role, scope.clone()))),
                            Cred::Key => req.header("x-api-key", &keys[r]),
                            Cred::None => req,
                        };
                        if let Some(body) = body {
                            req = req.json(&body);
                        }
                        let resp = req.send().await.unwrap();
                        let got = resp.status().as_u16();
                        // An event stream never ends: its status is the answer.
                        let text = if template.ends_with("/events") && got == 200 {
                            String::new()
                        } else {
                            resp.text().await.unwrap()
                        };
                        assert_eq!(
                            got, want,
                            "{method} {path} as {role:?} with {cred:?}, own fleet {mine}: {text}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, MATRIX.len() * 3 * 3 * 2);

        // The other fleet's resources are untouched by every refused change.
        let admin = admin_client();
        for (path, status) in [
            (format!("{BASE}/runs/{}", theirs.done_run), "succeeded"),
            (format!("{BASE}/runs/{}", theirs.pending_run), "pending"),
            (
                format!("{BASE}/rebalancing/{}", theirs.rebalancing),
                "planned",
            ),
        ] {
            let doc: Value = admin
                .get(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(doc["status"], status, "{path}");
        }
        let recs: Value = admin
            .get(format!(
                "{base}{BASE}/runs/{}/recommendations",
                theirs.done_run
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(recs["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "proposed"));
        assert!(store
            .get_key(&theirs.key_id)
            .await
            .unwrap()
            .revoked_at
            .is_none());

        // Another fleet's run is answered exactly like a run that does not exist.
        let viewer = hs256(&claims(Role::Viewer, scope.clone()));
        let mut answers = Vec::new();
        for id in [theirs.done_run.as_str(), "no-such-run"] {
            let resp = client
                .get(format!("{base}{BASE}/runs/{id}"))
                .bearer_auth(&viewer)
                .send()
                .await
                .unwrap();
            answers.push((resp.status(), resp.text().await.unwrap()));
        }
        assert_eq!(answers[0], answers[1]);
        assert_eq!(answers[0].0, StatusCode::NOT_FOUND);
    }
}

/// Asserts `token` is refused with 401 and a problem document.
async fn refused(client: &Client, url: &str, authorization: &str, what: &str) {
    let resp = client
        .get(url)
        .header("authorization", authorization)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what}");
    assert_eq!(
        resp.headers()["content-type"],
        "application/problem+json",
        "{what}"
    );
    assert_eq!(resp.headers()["www-authenticate"], "Bearer", "{what}");
}

#[tokio::test]
async fn bad_tokens_are_refused_hs256() {
    let store = stores().await.remove(0);
    let security = Security::new(
        Some(JwtVerifier::hs256(SECRET).unwrap()),
        RateLimiter::new(1e6, 1e6),
    );
    let base = spawn(AppState::new(store, 1).with_security(security)).await;
    let url = format!("{base}{BASE}/runs?fleet_id=f");
    let client = Client::new();
    let good = claims(Role::Viewer, json!(["f"]));
    // The control: a valid token is accepted.
    let ok = client
        .get(&url)
        .bearer_auth(hs256(&good))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    let with = |patch: Value| {
        let mut c = good.clone();
        c.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        c
    };
    let cases: Vec<(&str, String)> = vec![
        ("expired", hs256(&with(json!({"exp": now() - 3600})))),
        (
            "expired beyond the leeway only",
            hs256(&with(json!({"exp": now() - 45}))),
        ),
        ("not yet valid", hs256(&with(json!({"nbf": now() + 3600})))),
        ("no exp", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("exp");
            hs256(&c)
        }),
        ("no sub", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("sub");
            hs256(&c)
        }),
        ("unknown role", hs256(&with(json!({"role": "root"})))),
        ("fleets missing", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("fleets");
            hs256(&c)
        }),
        ("fleets empty", hs256(&with(json!({"fleets": []})))),
        (
            "wrong secret",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &good,
                &EncodingKey::from_secret(b"another-secret-0123456789abcdef-xyz"),
            )
            .unwrap(),
        ),
        ("alg none", {
            let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
            format!("{header}.{}.", b64(good.to_string().as_bytes()))
        }),
        ("alg none with a signature", {
            let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
            let valid = hs256(&good);
            let signature = valid.rsplit('.').next().unwrap();
            format!("{header}.{}.{signature}", b64(good.to_string().as_bytes()))
        }),
        ("RS256 token on an HS256 service", rs256(&good)),
        ("HS384 signed with the right secret", {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS384),
                &good,
                &EncodingKey::from_secret(SECRET),
            )
            .unwrap()
        }),
        ("payload altered after signing", {
            let valid = hs256(&good);
            let parts: Vec<&str> = valid.split('.').collect();
            let admin = with(json!({"role": "admin"}));
            format!(
                "{}.{}.{}",
                parts[0],
                b64(admin.to_string().as_bytes()),
                parts[2]
            )
        }),
        ("malformed: one segment", "abc".into()),
        ("malformed: three junk segments", "a.b.c".into()),
        ("malformed: not base64", "!!.??.**".into()),
    ];
    for (what, token) in &cases {
        refused(&client, &url, &format!("Bearer {token}"), what).await;
    }
    for header in [
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "bearer-less token",
    ] {
        refused(&client, &url, header, header).await;
    }
    // Both credentials at once: refused rather than guessing which counts.
    let both = client
        .get(&url)
        .bearer_auth(hs256(&good))
        .header("x-api-key", common::ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), StatusCode::UNAUTHORIZED);
    // A short secret is refused at start.
    assert!(JwtVerifier::hs256(b"short").is_err());
}

#[tokio::test]
async fn bad_tokens_are_refused_rs256_including_algorithm_confusion() {
    let store = stores().await.remove(0);
    let security = Security::new(
        Some(JwtVerifier::rs256(RS_PUBLIC).unwrap()),
        RateLimiter::new(1e6, 1e6),
    );
    let base = spawn(AppState::new(store, 1).with_security(security)).await;
    let url = format!("{base}{BASE}/runs?fleet_id=f");
    let client = Client::new();
    let good = claims(Role::Viewer, json!(["f"]));
    let ok = client
        .get(&url)
        .bearer_auth(rs256(&good))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 3600);
    let cases = [
        ("expired", rs256(&expired)),
        // The classic confusion: HS256 keyed with the RS256 public key.
        (
            "HS256 signed with the public key",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &good,
                &EncodingKey::from_secret(RS_PUBLIC),
            )
            .unwrap(),
        ),
        ("HS256 with the HS secret", hs256(&good)),
        ("alg none", {
            let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
            format!("{header}.{}.", b64(good.to_string().as_bytes()))
        }),
        ("signature of another token", {
            let a = rs256(&good);
            let b = rs256(&claims(Role::Admin, json!("*")));
            let (head, _) = b.rsplit_once('.').unwrap();
            format!("{head}.{}", a.rsplit('.').next().unwrap())
        }),
    ];
    for (what, token) in &cases {
        refused(&client, &url, &format!("Bearer {token}"), what).await;
    }
    assert!(JwtVerifier::rs256(b"not a key").is_err());
}

/// With `JWT_ISSUER` / `JWT_AUDIENCE`, tokens must carry them.
#[test]
fn issuer_and_audience_are_checked_when_configured() {
    let verifier = JwtVerifier::hs256(SECRET)
        .unwrap()
        .expecting(Some("https://idp.example"), Some("fleet-optimization"));
    let base = claims(Role::Viewer, json!(["f"]));
    let with = |iss: Option<&str>, aud: Option<Value>| {
        let mut c = base.clone();
        if let Some(iss) = iss {
            c["iss"] = json!(iss);
        }
        if let Some(aud) = aud {
            c["aud"] = aud;
        }
        hs256(&c)
    };
    let ok = with(
        Some("https://idp.example"),
        Some(json!("fleet-optimization")),
    );
    assert!(verifier.verify(&ok).is_ok());
    let listed = with(
        Some("https://idp.example"),
        Some(json!(["other", "fleet-optimization"])),
    );
    assert!(verifier.verify(&listed).is_ok());
    for (what, token) in [
        ("no iss", with(None, Some(json!("fleet-optimization")))),
        ("no aud", with(Some("https://idp.example"), None)),
        (
            "other iss",
            with(
                Some("https://evil.example"),
                Some(json!("fleet-optimization")),
            ),
        ),
        (
            "other aud",
            with(Some("https://idp.example"), Some(json!("billing"))),
        ),
    ] {
        assert!(verifier.verify(&token).is_err(), "{what}");
    }
    // Without them configured, a token carrying iss and aud is still accepted.
    let plain = JwtVerifier::hs256(SECRET).unwrap();
    assert!(plain.verify(&ok).is_ok());
}

#[tokio::test]
async fn api_keys_are_created_listed_without_secrets_and_revoked() {
    for store in stores().await {
        let base = spawn(AppState::new(store.clone(), 1)).await;
        let admin = admin_client();
        let fleet = format!("keys-{}", new_id());
        let created = admin
            .post(format!("{base}{BASE}/keys"))
            .json(&json!({"name": "dispatch", "role": "operator", "fleets": [fleet]}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let created: Value = created.json().await.unwrap();
        let secret = created["api_key"].as_str().unwrap().to_owned();
        let id = created["key"]["id"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("fo_"));
        // Stored only as a hash: the secret is in no column.
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT key_hash, prefix FROM api_keys WHERE id = $1")
                .bind(&id)
                .fetch_all(store.pool())
                .await
                .unwrap();
        assert_eq!(rows.len(), 1);
        assert_ne!(rows[0].0, secret);
        assert_eq!(rows[0].0, fleet_api::api_keys::hash_key(&secret));
        assert!(!secret.ends_with(&rows[0].1) && rows[0].1.len() == 8);

        // The key works, within its fleet and role.
        let with_key = |path: String| {
            Client::new()
                .get(format!("{base}{BASE}{path}"))
                .header("x-api-key", &secret)
        };
        let ok = with_key(format!("/runs?fleet_id={fleet}"))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        let other = with_key("/runs?fleet_id=elsewhere".into())
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), StatusCode::NOT_FOUND);
        let keys = with_key("/keys".into()).send().await.unwrap();
        assert_eq!(keys.status(), StatusCode::FORBIDDEN);

        // Listed without the secret or its hash.
        let list = admin
            .get(format!("{base}{BASE}/keys"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(list.contains(&id));
        assert!(!list.contains(&secret[8..]) && !list.contains(&rows[0].0));

        // Bad input names the field.
        for (body, field) in [
            (json!({"name": "x", "role": "root", "fleets": "*"}), "role"),
            (
                json!({"name": "x", "role": "viewer", "fleets": []}),
                "fleets",
            ),
            (
                json!({"name": " ", "role": "viewer", "fleets": "*"}),
                "name",
            ),
        ] {
            let resp = admin
                .post(format!("{base}{BASE}/keys"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
            let doc: Value = resp.json().await.unwrap();
            assert_eq!(doc["field"], field);
        }

        // Revoked: refused at once on this replica.
        let revoked = admin
            .delete(format!("{base}{BASE}/keys/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(revoked.status(), StatusCode::OK);
        let doc: Value = revoked.json().await.unwrap();
        assert!(doc["revoked_at"].is_i64());
        let after = with_key(format!("/runs?fleet_id={fleet}"))
            .send()
            .await
            .unwrap();
        assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
        let unknown = Client::new()
            .get(format!("{base}{BASE}/runs"))
            .header("x-api-key", "fo_not-a-key")
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);

        // An admin of one fleet cannot mint keys beyond it.
        let (_, scoped) = store
            .create_key(
                "scoped",
                Role::Admin,
                &Fleets::Only(vec![fleet.clone()]),
                "test",
            )
            .await
            .unwrap();
        let wider = Client::new()
            .post(format!("{base}{BASE}/keys"))
            .header("x-api-key", &scoped)
            .json(&json!({"name": "x", "role": "admin", "fleets": "*"}))
            .send()
            .await
            .unwrap();
        assert_eq!(wider.status(), StatusCode::NOT_FOUND);
        // ... nor write service-wide metric points (no fleet_id).
        let global = Client::new()
            .post(format!("{base}{BASE}/metrics"))
            .header("x-api-key", &scoped)
            .json(&json!([{"name": "m", "value": 1.0}]))
            .send()
            .await
            .unwrap();
        assert_eq!(global.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let doc: Value = global.json().await.unwrap();
        assert_eq!(doc["field"], "[0].fleet_id");
    }
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_per_credential() {
    let store = stores().await.remove(0);
    let security = Security::new(None, RateLimiter::new(2.0, 3.0));
    let state = AppState::new(store.clone(), 1).with_security(security);
    let base = spawn(state).await;
    let (_, one) = store
        .create_key("one", Role::Viewer, &Fleets::All, "test")
        .await
        .unwrap();
    let (_, two) = store
        .create_key("two", Role::Viewer, &Fleets::All, "test")
        .await
        .unwrap();
    let get = |key: &str| {
        Client::new()
            .get(format!("{base}{BASE}/runs"))
            .header("x-api-key", key)
            .send()
    };
    for _ in 0..3 {
        assert_eq!(get(&one).await.unwrap().status(), StatusCode::OK);
    }
    let limited = get(&one).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(
        limited.headers()["content-type"],
        "application/problem+json"
    );
    // Another credential is not affected.
    assert_eq!(get(&two).await.unwrap().status(), StatusCode::OK);
    // Public routes are not limited.
    let health = Client::new()
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    // After the advertised wait, the credential is served again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(get(&one).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn every_state_change_is_audited_and_the_log_is_append_only() {
    for store in stores().await {
        let security = Security::new(
            Some(JwtVerifier::hs256(SECRET).unwrap()),
            RateLimiter::new(1e6, 1e6),
        );
        let base = spawn(AppState::new(store.clone(), 1).with_security(security)).await;
        let fleet = format!("audit-{}", new_id());
        let other = format!("audit-other-{}", new_id());
        let client = Client::new();
        let operator = hs256(
            &json!({"sub": "ops@example.com", "role": "operator", "fleets": [fleet], "exp": now() + 600}),
        );
        let viewer = hs256(
            &json!({"sub": "viewer-1", "role": "viewer", "fleets": [fleet], "exp": now() + 600}),
        );
        let body = json!({"fleet_id": fleet, "name": "audited", "problem": manhattan()});
        let created = client
            .post(format!("{base}{BASE}/runs"))
            .bearer_auth(&operator)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let run: Value = created.json().await.unwrap();
        let run_id = run["id"].as_str().unwrap().to_owned();
        let denied = client
            .delete(format!("{base}{BASE}/runs/{run_id}"))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(denied.status(), StatusCode::FORBIDDEN);
        let elsewhere = client
            .post(format!("{base}{BASE}/runs"))
            .bearer_auth(&operator)
            .json(&json!({"fleet_id": other, "name": "x", "problem": manhattan()}))
            .send()
            .await
            .unwrap();
        assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);
        let anonymous = client
            .post(format!("{base}{BASE}/runs"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        // Reads are not audited.
        client
            .get(format!("{base}{BASE}/runs/{run_id}"))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();

        let entries = |query: String, token: String| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let resp = client
                    .get(format!("{base}{BASE}/audit?{query}"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                let status = resp.status();
                (status, resp.json::<Value>().await.unwrap())
            }
        };
        let admin =
            hs256(&json!({"sub": "root", "role": "admin", "fleets": "*", "exp": now() + 600}));
        let (status, doc) = entries(format!("fleet_id={fleet}"), admin.clone()).await;
        assert_eq!(status, StatusCode::OK);
        let items = doc["items"].as_array().unwrap();
        let summary: Vec<(String, String, String, String, Value, u64)> = items
            .iter()
            .map(|e| {
                (
                    e["subject"].as_str().unwrap().to_owned(),
                    e["role"].as_str().unwrap_or("-").to_owned(),
                    e["credential"].as_str().unwrap().to_owned(),
                    e["action"].as_str().unwrap().to_owned(),
                    e["resource_id"].clone(),
                    e["outcome"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "ops@example.com".into(),
                    "operator".into(),
                    "jwt".into(),
                    format!("POST {BASE}/runs"),
                    json!(run_id),
                    201
                ),
                (
                    "viewer-1".into(),
                    "viewer".into(),
                    "jwt".into(),
                    format!("DELETE {BASE}/runs/{{id}}"),
                    json!(run_id),
                    403
                ),
            ]
        );
        // The refused write to another fleet is recorded under that fleet.
        let (_, doc) = entries(format!("fleet_id={other}"), admin.clone()).await;
        let theirs = doc["items"].as_array().unwrap();
        assert_eq!(theirs.len(), 1);
        assert_eq!(theirs[0]["outcome"], 404);
        assert_eq!(theirs[0]["subject"], "ops@example.com");
        // The anonymous attempt is there too, by subject "-".
        let (_, doc) = entries("subject=-".into(), admin.clone()).await;
        assert!(doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == 401 && e["credential"] == "none"));
        // An admin of one fleet sees only that fleet's entries.
        let scoped = hs256(
            &json!({"sub": "fleet-admin", "role": "admin", "fleets": [fleet], "exp": now() + 600}),
        );
        let (status, _) = entries(format!("fleet_id={other}"), scoped.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, doc) = entries(String::new(), scoped).await;
        assert_eq!(status, StatusCode::OK);
        assert!(doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["fleet_id"] == json!(fleet)));
        // Operators cannot read the log.
        let (status, _) = entries(String::new(), operator).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Append-only, in the database itself.
        for statement in [
            "UPDATE audit_log SET outcome = 200",
            "DELETE FROM audit_log",
        ] {
            let err = sqlx::query(statement)
                .execute(store.pool())
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains("append-only"),
                "{statement}: {err}"
            );
        }
        let (_, doc) = entries(format!("fleet_id={fleet}"), admin).await;
        assert_eq!(doc["items"].as_array().unwrap().len(), 2);
    }
}
