//! The real service on a random port, against a real SQLite file and the
//! real PostgreSQL server: every endpoint, the run lifecycle and bad input
//! (as an admin of all fleets; access control is tested in `access.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_api::http::{AppState, BASE};
use fleet_api::store::{new_id, MetricPoint};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

mod common;
use common::{admin_client, spawn, stores};

fn manhattan() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/manhattan.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn problem_field(resp: reqwest::Response) -> (StatusCode, Option<String>) {
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        ct.as_deref(),
        Some("application/problem+json"),
        "status {status}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    (status, body["field"].as_str().map(str::to_owned))
}

/// GETs `url` and parses the JSON body.
async fn get_json(client: &Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// POSTs a Manhattan-example run for `fleet`; returns its id and URL.
async fn post_run(client: &Client, base: &str, fleet: &str, name: &str) -> (String, String) {
    let created: Value = client
        .post(format!("{base}{BASE}/runs"))
        .json(&json!({"fleet_id": fleet, "name": name, "problem": manhattan()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let url = format!("{base}{BASE}/runs/{id}");
    (id, url)
}

/// Polls a run until it reaches a final status (bounded: fails after 30 s).
async fn wait_final(client: &Client, url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        if ["succeeded", "failed", "cancelled"].contains(&run["status"].as_str().unwrap()) {
            return run;
        }
        assert!(Instant::now() < deadline, "run never finished: {run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_run_executes_and_its_results_and_recommendations_are_served() {
    for store in stores().await {
        let base = spawn(AppState::new(store, 2)).await;
        let client = admin_client();
        let health: Value = get_json(&client, &format!("{base}/health")).await;
        assert_eq!(health["dependencies"]["database"], "ok");

        let fleet = format!("fleet-{}", new_id());
        let resp = client
            .post(format!("{base}{BASE}/runs"))
            .json(&json!({"fleet_id": fleet, "name": "evening", "problem": manhattan()}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let created: Value = resp.json().await.unwrap();
        assert_eq!(
            location,
            format!("{BASE}/runs/{}", created["id"].as_str().unwrap())
        );
        assert_eq!(created["status"], "pending");

        let run = wait_final(&client, &format!("{base}{location}")).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        let results: Value = get_json(&client, &format!("{base}{location}/results")).await;
        let moves = results["report"]["moves"].as_array().unwrap().len();
        assert!(
            moves > 0 && results["objective"].as_f64().unwrap() > 0.0,
            "{results}"
        );
        assert!(!results["report"]["pareto"].as_array().unwrap().is_empty());
        let recs: Value = get_json(&client, &format!("{base}{location}/recommendations")).await;
        let recs = recs["items"].as_array().unwrap();
        assert_eq!(recs.len(), moves);
        assert!(recs
            .iter()
            .all(|r| r["status"] == "proposed" && r["fleet_id"] == fleet.as_str()));

        let list: Value = get_json(&client, &format!("{base}{BASE}/runs?fleet_id={fleet}")).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1);

        // A finished run cannot be cancelled; deleting removes it and its outcome.
        let resp = client
            .put(format!("{base}{location}"))
            .json(&json!({"status": "cancelled"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            problem_field(resp).await,
            (StatusCode::CONFLICT, Some("status".into()))
        );
        let resp = client
            .delete(format!("{base}{location}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        for path in ["", "/results", "/recommendations"] {
            let resp = client
                .get(format!("{base}{location}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(problem_field(resp).await.0, StatusCode::NOT_FOUND);
        }
    }
}

#[tokio::test]
async fn pending_runs_can_be_cancelled_and_then_never_run() {
    for store in stores().await {
        // No worker slot: runs wait as pending until one is added.
        let state = AppState {
            workers: Arc::new(Semaphore::new(0)),
            ..AppState::new(store, 1)
        };
        let workers = state.workers.clone();
        let base = spawn(state).await;
        let client = admin_client();
        let fleet = format!("fleet-{}", new_id());
        let (_, url) = post_run(&client, &base, &fleet, "waits").await;
        // A pending run can be edited: name and spec; the problem is validated.
        let edited: Value = client
            .put(&url)
            .json(&json!({"name": "renamed", "constraints": {"max_move_km": 5}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            (edited["name"].as_str(), edited["status"].as_str()),
            (Some("renamed"), Some("pending"))
        );
        assert_eq!(
            edited["spec"]["constraints"]["max_move_km"].as_f64(),
            Some(5.0)
        );
        assert_eq!(edited["spec"]["problem"], manhattan());
        let mut bad = manhattan();
        bad["costs"]["per_km"] = json!(-1);
        let resp = client
            .put(&url)
            .json(&json!({"problem": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            problem_field(resp).await,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("problem.costs.per_km".into())
            )
        );
        let resp = client.put(&url).json(&json!({})).send().await.unwrap();
        assert_eq!(
            problem_field(resp).await.0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        // Only cancelling is a client's to ask for.
        let resp = client
            .put(&url)
            .json(&json!({"status": "succeeded"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            problem_field(resp).await,
            (StatusCode::CONFLICT, Some("status".into()))
        );
        let cancelled: Value = client
            .put(&url)
            .json(&json!({"status": "cancelled"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(cancelled["status"], "cancelled");
        workers.add_permits(1);
        let run = wait_final(&client, &url).await;
        assert_eq!(run["status"], "cancelled");
        // A finished run cannot be edited.
        let resp = client
            .put(&url)
            .json(&json!({"name": "late"}))
            .send()
            .await
            .unwrap();
        assert_eq!(problem_field(resp).await.0, StatusCode::CONFLICT);
        let resp = client.get(format!("{url}/results")).send().await.unwrap();
        assert_eq!(problem_field(resp).await.0, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn bad_input_is_a_problem_document_naming_the_field_and_stores_nothing() {
    for store in stores().await {
        let base = spawn(AppState::new(store, 1)).await;
        let client = admin_client();
        let fleet = format!("fleet-{}", new_id());
        let runs = format!("{base}{BASE}/runs");
        let post = |body: String| {
            client
                .post(&runs)
                .header("content-type", "application/json")
                .body(body)
                .send()
        };

        let mut bad_problem = manhattan();
        bad_problem["zones"][1]["idle"] = json!(-3);
        let mut bad_matrix = manhattan();
        bad_matrix["travel"] = json!({"matrix_km": [[0.0, 1.0]]});
        let cases: Vec<(String, StatusCode, Option<&str>)> = vec![
            ("{\"fleet_id\": ".into(), StatusCode::BAD_REQUEST, None),
            (
                json!({"fleet_id": 7, "name": "x"}).to_string(),
                StatusCode::BAD_REQUEST,
                Some("fleet_id"),
            ),
            (
                json!({"fleet_id": fleet, "name": "x", "problem": manhattan(), "colour": 1})
                    .to_string(),
                StatusCode::BAD_REQUEST,
                None,
            ),
            (
                json!({"fleet_id": fleet, "name": ""}).to_string(),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("name"),
            ),
            (
                json!({"fleet_id": fleet, "name": "x"}).to_string(),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("problem"),
            ),
            (
                json!({"fleet_id": fleet, "name": "x", "mode": "sometimes"}).to_string(),
                StatusCode::BAD_REQUEST,
                Some("mode"),
            ),
            (
                json!({"fleet_id": fleet, "name": "x", "problem": bad_problem}).to_string(),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("problem"),
            ),
            (
                json!({"fleet_id": fleet, "name": "x", "problem": bad_matrix}).to_string(),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("problem.travel.matrix_km"),
            ),
        ];
        for (body, status, field) in cases {
            let resp = post(body.clone()).await.unwrap();
            let (got, got_field) = problem_field(resp).await;
            assert_eq!(got, status, "{body}");
            if let Some(field) = field {
                let got_field = got_field.unwrap_or_default();
                assert!(
                    got_field.starts_with(field),
                    "{body}: field {got_field:?}, wanted {field}"
                );
            }
        }
        // Oversized bodies are refused before parsing.
        let huge = format!(
            "{{\"fleet_id\": \"{fleet}\", \"name\": \"{}\"}}",
            "x".repeat(3 << 20)
        );
        assert_eq!(
            post(huge).await.unwrap().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        // Nothing was stored for this fleet.
        let list: Value = get_json(&client, &format!("{runs}?fleet_id={fleet}")).await;
        assert!(list["items"].as_array().unwrap().is_empty());

        for (query, field) in [
            ("limit=501", "limit"),
            ("limit=0", "limit"),
            ("status=done", "status"),
            ("cursor=zz", "cursor"),
        ] {
            let resp = client.get(format!("{runs}?{query}")).send().await.unwrap();
            assert_eq!(
                problem_field(resp).await,
                (StatusCode::BAD_REQUEST, Some(field.into())),
                "{query}"
            );
        }
        for path in ["/nope", "/nope/results", "/nope/recommendations"] {
            let resp = client.get(format!("{runs}{path}")).send().await.unwrap();
            assert_eq!(problem_field(resp).await.0, StatusCode::NOT_FOUND);
        }
        let resp = client.delete(format!("{runs}/nope")).send().await.unwrap();
        assert_eq!(problem_field(resp).await.0, StatusCode::NOT_FOUND);
        let resp = client
            .put(format!("{runs}/nope"))
            .json(&json!({"status": "cancelled"}))
            .send()
            .await
            .unwrap();
        assert_eq!(problem_field(resp).await.0, StatusCode::NOT_FOUND);
        let resp = client
            .get(format!("{base}/no/such/route"))
            .send()
            .await
            .unwrap();
        assert_eq!(problem_field(resp).await.0, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn rebalancing_from_recommendations_accepts_them_once() {
    for store in stores().await {
        let base = spawn(AppState::new(store, 2)).await;
        let client = admin_client();
        let fleet = format!("fleet-{}", new_id());
        let (run_id, run_url) = post_run(&client, &base, &fleet, "for ops").await;
        assert_eq!(wait_final(&client, &run_url).await["status"], "succeeded");
        let recs: Value = get_json(&client, &format!("{run_url}/recommendations")).await;
        let ids: Vec<String> = recs["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        assert!(ids.len() >= 2, "{recs}");

        let ops = format!("{base}{BASE}/rebalancing");
        // Another fleet cannot use them; nothing is accepted by the attempt.
        let resp = client
            .post(&ops)
            .json(&json!({"fleet_id": "other", "recommendation_ids": ids}))
            .send()
            .await
            .unwrap();
        assert_eq!(problem_field(resp).await.0, StatusCode::CONFLICT);
        let resp = client
            .post(&ops)
            .json(&json!({"fleet_id": fleet, "run_id": run_id, "recommendation_ids": ids[..1]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let op: Value = resp.json().await.unwrap();
        assert_eq!(op["status"], "planned");
        assert_eq!(op["moves"].as_array().unwrap().len(), 1);
        let recs: Value = get_json(&client, &format!("{run_url}/recommendations")).await;
        let statuses: Vec<&str> = recs["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_str().unwrap())
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == "accepted").count(),
            1,
            "{statuses:?}"
        );
        // Adoption rate: one of the run's recommendations accepted.
        let rate: Value = client
            .get(format!(
                "{base}{BASE}/metrics?name=recommendation_adoption_rate_pct&fleet_id={fleet}"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let expected = 100.0 / ids.len() as f64;
        assert!(
            (rate["points"][0]["value"].as_f64().unwrap() - expected).abs() < 1e-9,
            "{rate}"
        );
        // Accepting the same one again (with a fresh one) is refused as a whole.
        let resp = client
            .post(&ops)
            .json(
                &json!({"fleet_id": fleet, "recommendation_ids": [ids[1].clone(), ids[0].clone()]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(problem_field(resp).await.0, StatusCode::CONFLICT);
        let recs: Value = get_json(&client, &format!("{run_url}/recommendations")).await;
        assert_eq!(
            recs["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["status"] == "accepted")
                .count(),
            1
        );

        // Rejecting: all or none, only proposed ones, then it cannot be accepted.
        let decide = format!("{run_url}/recommendations");
        let last = ids.last().unwrap().clone();
        let resp = client
            .post(&decide)
            .json(&json!({"ids": [last.clone(), ids[0].clone()], "status": "rejected"}))
            .send()
            .await
            .unwrap();
        assert_eq!(problem_field(resp).await.0, StatusCode::CONFLICT);
        let resp = client
            .post(&decide)
            .json(&json!({"ids": [last.clone()], "status": "accepted"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            problem_field(resp).await,
            (StatusCode::UNPROCESSABLE_ENTITY, Some("status".into()))
        );
        let after: Value = client
            .post(&decide)
            .json(&json!({"ids": [last.clone()], "status": "rejected"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rejected: Vec<&Value> = after["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "rejected")
            .collect();
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0]["id"], last.as_str());
        let resp = client
            .post(&ops)
            .json(&json!({"fleet_id": fleet, "recommendation_ids": [last]}))
            .send()
            .await
            .unwrap();
        assert_eq!(problem_field(resp).await.0, StatusCode::CONFLICT);

        // Lifecycle: planned -> in_progress -> completed; nothing after.
        let op_url = format!("{ops}/{}", op["id"].as_str().unwrap());
        let resp = client
            .put(&op_url)
            .json(&json!({"status": "completed"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            problem_field(resp).await,
            (StatusCode::CONFLICT, Some("status".into()))
        );
        for next in ["in_progress", "completed"] {
            let got: Value = client
                .put(&op_url)
                .json(&json!({"status": next}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(got["status"], next);
        }
        let resp = client
            .put(&op_url)
            .json(&json!({"status": "cancelled"}))
            .send()
            .await
            .unwrap();
        assert_eq!(problem_field(resp).await.0, StatusCode::CONFLICT);

        // Explicit moves; bad bodies name the field.
        let explicit: Value = client
            .post(&ops)
            .json(
                &json!({"fleet_id": fleet, "moves": [{"from": "79", "to": "161", "vehicles": 2}]}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(explicit["status"], "planned");
        for (body, field) in [
            (json!({"fleet_id": fleet}), "recommendation_ids"),
            (
                json!({"fleet_id": fleet, "moves": [{"from": "a", "to": "a", "vehicles": 1}]}),
                "moves[0]",
            ),
            (
                json!({"fleet_id": fleet, "moves": [{"from": "a", "to": "b", "vehicles": -1}]}),
                "moves[0].vehicles",
            ),
        ] {
            let resp = client.post(&ops).json(&body).send().await.unwrap();
            let (_, got) = problem_field(resp).await;
            assert_eq!(got.as_deref(), Some(field), "{body}");
        }
        let list: Value = get_json(&client, &format!("{ops}?fleet_id={fleet}&limit=1")).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        let next = list["next_cursor"].as_str().unwrap();
        let rest: Value = get_json(&client, &format!("{ops}?fleet_id={fleet}&cursor={next}")).await;
        assert_eq!(rest["items"].as_array().unwrap().len(), 1);
        assert_eq!(
            client.delete(&op_url).send().await.unwrap().status(),
            StatusCode::NO_CONTENT
        );
        let resp = client.get(&op_url).send().await.unwrap();
        assert_eq!(problem_field(resp).await.0, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn metrics_are_ingested_queried_and_bucketed_and_runs_record_their_own() {
    for store in stores().await {
        let base = spawn(AppState::new(store, 1)).await;
        let client = admin_client();
        let fleet = format!("fleet-{}", new_id());
        let metrics = format!("{base}{BASE}/metrics");
        let name = format!("m_{}", new_id());
        // Three points in minute 0 and one in minute 2 (RFC 3339 and epoch ms mixed).
        let points = json!([
            {"name": name, "value": 1.0, "fleet_id": fleet, "ts": "2019-03-04T08:00:10Z"},
            {"name": name, "value": 3.0, "fleet_id": fleet, "ts": 1551686420000i64},
            {"name": name, "value": 5.0, "fleet_id": fleet, "ts": "2019-03-04T08:00:50.250Z", "labels": {"zone": "161"}},
            {"name": name, "value": 10.0, "fleet_id": fleet, "ts": "2019-03-04T08:02:00Z"}
        ]);
        let resp = client.post(&metrics).json(&points).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let got: Value = get_json(&client, &format!("{metrics}?name={name}")).await;
        let values: Vec<f64> = got["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["value"].as_f64().unwrap())
            .collect();
        assert_eq!(values, vec![1.0, 3.0, 5.0, 10.0]);
        assert_eq!(got["points"][2]["labels"]["zone"], "161");
        let got: Value = client
            .get(format!(
                "{metrics}?name={name}&bucket=1m&from=2019-03-04T08:00:00Z&to=2019-03-04T09:00:00Z"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let buckets = got["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), 2, "{got}");
        assert_eq!(
            (
                buckets[0]["count"].as_i64(),
                buckets[0]["avg"].as_f64(),
                buckets[0]["max"].as_f64()
            ),
            (Some(3), Some(3.0), Some(5.0))
        );
        assert_eq!(buckets[1]["start"].as_i64(), Some(1_551_686_520_000));
        // `to` is exclusive.
        let got: Value =
            get_json(&client, &format!("{metrics}?name={name}&to=1551686520000")).await;
        assert_eq!(got["points"].as_array().unwrap().len(), 3);

        // Bad points are refused as a whole, naming the point and field.
        for (body, field) in [
            (
                json!([{"name": name, "value": 1.0}, {"name": "bad name", "value": 1.0}]),
                "[1].name",
            ),
            (
                json!({"name": name, "value": 1.0, "ts": "yesterday"}),
                "[0].ts",
            ),
            (
                json!({"name": name, "value": 1.0, "labels": {"zone": 5}}),
                "[0].labels.zone",
            ),
        ] {
            let resp = client.post(&metrics).json(&body).send().await.unwrap();
            assert_eq!(
                problem_field(resp).await,
                (StatusCode::UNPROCESSABLE_ENTITY, Some(field.into())),
                "{body}"
            );
        }
        let got: Value = get_json(&client, &format!("{metrics}?name={name}")).await;
        assert_eq!(
            got["points"].as_array().unwrap().len(),
            4,
            "a refused batch stored nothing"
        );
        for (query, field) in [
            ("bucket=5w", "bucket"),
            ("from=soon", "from"),
            ("limit=9999", "limit"),
        ] {
            let resp = client
                .get(format!("{metrics}?{query}"))
                .send()
                .await
                .unwrap();
            assert_eq!(
                problem_field(resp).await,
                (StatusCode::BAD_REQUEST, Some(field.into())),
                "{query}"
            );
        }

        // A run writes its success and execution time.
        let (_, url) = post_run(&client, &base, &fleet, "measured").await;
        assert_eq!(wait_final(&client, &url).await["status"], "succeeded");
        for (metric, check) in [
            ("optimization_success", 1.0),
            ("optimization_execution_time_ms", -1.0),
            // The Manhattan example has moves worth making, so both are positive.
            ("cost_reduction_pct", -1.0),
            ("fleet_efficiency_improvement_pct", -1.0),
        ] {
            let got: Value = get_json(
                &client,
                &format!("{metrics}?name={metric}&fleet_id={fleet}"),
            )
            .await;
            let points = got["points"].as_array().unwrap();
            assert_eq!(points.len(), 1, "{metric}: {got}");
            let value = points[0]["value"].as_f64().unwrap();
            assert!(
                if check >= 0.0 {
                    value == check
                } else {
                    value > 0.0
                },
                "{metric} = {value}"
            );
        }
    }
}

#[tokio::test]
async fn responses_carry_request_ids_and_prometheus_counts_routes() {
    let store = stores().await.remove(0);
    let base = spawn(AppState::new(store, 1)).await;
    let client = admin_client();
    // A caller's request id is echoed; without one the service makes one.
    let resp = client
        .get(format!("{base}/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let resp = client
        .get(format!("{base}{BASE}/runs/missing"))
        .send()
        .await
        .unwrap();
    let made = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(!made.is_empty() && made != "abc-123");
    // A hostile id is replaced, not echoed.
    let resp = client
        .get(format!("{base}/health"))
        .header("x-request-id", "a b\"c")
        .send()
        .await
        .unwrap();
    assert_ne!(resp.headers()["x-request-id"], "a b\"c");

    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Route templates, not concrete ids, label the series.
    assert!(
        text.contains(&format!(
            "http_requests_total{{method=\"GET\",route=\"{BASE}/runs/{{id}}\",status=\"404\"}}"
        )),
        "{text}"
    );
    assert!(!text.contains("missing"));
    assert!(
        text.contains(
            "http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\",le=\"+Inf\"}"
        ),
        "{text}"
    );
    assert!(text.contains("# TYPE optimization_runs_total counter"));

    // The seed's metrics of a finished run: the same value on the API and in Prometheus.
    let fleet = format!("prom-{}", new_id());
    let (_, url) = post_run(&client, &base, &fleet, "prometheus").await;
    assert_eq!(wait_final(&client, &url).await["status"], "succeeded");
    let points = get_json(
        &client,
        &format!("{base}{BASE}/metrics?name=cost_reduction_pct&fleet_id={fleet}"),
    )
    .await;
    let value = points["points"][0]["value"].as_f64().unwrap();
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!("fleet_metric{{name=\"cost_reduction_pct\",fleet_id=\"{fleet}\"}} ");
    let shown: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .unwrap_or_else(|| panic!("{line} missing: {text}"))
        .parse()
        .unwrap();
    assert_eq!(shown, value);
    for name in [
        "optimization_success",
        "optimization_execution_time_ms",
        "fleet_efficiency_improvement_pct",
    ] {
        assert!(
            text.contains(&format!(
                "fleet_metric{{name=\"{name}\",fleet_id=\"{fleet}\"}}"
            )),
            "{name}"
        );
    }
    assert!(
        text.contains("\noptimization_success_rate 1\n")
            || text.contains("\noptimization_success_rate 0.")
    );
    let same = client
        .get(format!("{base}/metrics/prometheus"))
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), StatusCode::OK);
}

/// With Redis: run lists are served from the cache until a run write of the
/// service (create, each status change, cancel, delete) makes them stale; a
/// row written behind the service's back stays unseen, which shows the page
/// really came from the cache.
#[tokio::test]
async fn cached_run_lists_go_stale_on_every_run_write() {
    use fleet_api::cache::Cache;
    use fleet_api::run::RunMode;
    use fleet_api::store::NewRun;
    let addr = std::env::var("TEST_REDIS_ADDR").unwrap_or_else(|_| "127.0.0.1:6379".into());
    for store in stores().await {
        let cache = Cache::redis(&addr).await.unwrap();
        let base = spawn(AppState::new(store.clone(), 1).with_cache(cache)).await;
        let client = admin_client();
        let fleet = format!("fleet-{}", new_id());
        let list = format!("{base}{BASE}/runs?fleet_id={fleet}");
        let statuses = |page: &Value| -> Vec<(String, String)> {
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["name"].as_str().unwrap().to_owned(),
                        r["status"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        };
        assert!(statuses(&get_json(&client, &list).await).is_empty());

        // Behind the service's back (a store not attached to the cache).
        let hidden = store
            .create_run(NewRun {
                fleet_id: fleet.clone(),
                name: "hidden".into(),
                mode: RunMode::OneShot,
                spec: json!({}),
            })
            .await
            .unwrap();
        assert!(
            statuses(&get_json(&client, &list).await).is_empty(),
            "served from the cache"
        );

        // A run created over the API: the list is stale, both runs appear.
        let (_, url) = post_run(&client, &base, &fleet, "api").await;
        assert_eq!(wait_final(&client, &url).await["status"], "succeeded");
        let page = statuses(&get_json(&client, &list).await);
        assert_eq!(page.len(), 2, "{page:?}");
        assert!(
            page.contains(&("api".into(), "succeeded".into())),
            "{page:?}"
        );
        assert!(
            page.contains(&("hidden".into(), "pending".into())),
            "{page:?}"
        );

        // Cancel, then delete: each shows at once.
        let hidden_url = format!("{base}{BASE}/runs/{}", hidden.id);
        let resp = client
            .put(&hidden_url)
            .json(&json!({"status": "cancelled"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let page = statuses(&get_json(&client, &list).await);
        assert!(
            page.contains(&("hidden".into(), "cancelled".into())),
            "{page:?}"
        );
        let resp = client.delete(&hidden_url).send().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        let page = statuses(&get_json(&client, &list).await);
        assert_eq!(page, vec![("api".to_owned(), "succeeded".to_owned())]);
    }
}

/// With Redis: health reports it, finished runs' documents are cached in the
/// real server, and accepting a recommendation invalidates the cached list.
#[tokio::test]
async fn redis_caches_hot_reads_and_writes_invalidate_them() {
    use fleet_api::cache::{recommendations_key, results_key, Cache};
    let addr = std::env::var("TEST_REDIS_ADDR").unwrap_or_else(|_| "127.0.0.1:6379".into());
    for store in stores().await {
        let cache = Cache::redis(&addr).await.unwrap();
        let base = spawn(AppState::new(store.clone(), 1).with_cache(cache)).await;
        let client = admin_client();
        let health: Value = get_json(&client, &format!("{base}/health")).await;
        assert_eq!(health["dependencies"]["redis"], "ok");

        let fleet = format!("fleet-{}", new_id());
        let (run_id, url) = post_run(&client, &base, &fleet, "cached").await;
        assert_eq!(wait_final(&client, &url).await["status"], "succeeded");
        let first: Value = get_json(&client, &format!("{url}/results")).await;
        let recs: Value = get_json(&client, &format!("{url}/recommendations")).await;

        // The documents are now in the real Redis, byte for byte what was served.
        let redis = redis::Client::open(format!("redis://{addr}")).unwrap();
        let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
        let cached: Option<String> = redis::cmd("GET")
            .arg(results_key(&run_id))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&cached.unwrap()).unwrap(),
            first
        );
        let again: Value = get_json(&client, &format!("{url}/results")).await;
        assert_eq!(again, first);

        // Accepting a recommendation makes the cached list stale: it is dropped.
        let rec_id = recs["items"][0]["id"].as_str().unwrap();
        let resp = client
            .post(format!("{base}{BASE}/rebalancing"))
            .json(&json!({"fleet_id": fleet, "recommendation_ids": [rec_id]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let gone: Option<String> = redis::cmd("GET")
            .arg(recommendations_key(&run_id))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(gone.is_none());
        let fresh: Value = get_json(&client, &format!("{url}/recommendations")).await;
        assert_eq!(fresh["items"][0]["status"], "accepted");

        // Deleting the run drops its cached documents.
        client.delete(&url).send().await.unwrap();
        let gone: Option<String> = redis::cmd("GET")
            .arg(results_key(&run_id))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(gone.is_none());

        // Metric aggregates: served from Redis until a write makes them stale.
        let name = format!("m_{}", new_id());
        let ingest = |value: f64| {
            client
                .post(format!("{base}{BASE}/metrics"))
                .json(&json!({"name": name, "value": value, "fleet_id": fleet, "ts": 1_000}))
                .send()
        };
        assert_eq!(ingest(2.0).await.unwrap().status(), StatusCode::CREATED);
        let query = format!("{base}{BASE}/metrics?name={name}&bucket=1h");
        let sum = |v: &Value| v["buckets"][0]["sum"].as_f64().unwrap();
        assert_eq!(sum(&get_json(&client, &query).await), 2.0);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("fleet-optimization:metrics:*{name}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        // A point written behind the service's back is not seen: the answer is cached ...
        let point = MetricPoint {
            name: name.clone(),
            value: 5.0,
            fleet_id: Some(fleet.clone()),
            ts: 2_000,
            labels: Default::default(),
        };
        store.insert_metrics(&[point]).await.unwrap();
        assert_eq!(sum(&get_json(&client, &query).await), 2.0);
        // ... and a write through the API bumps the generation: all three count.
        assert_eq!(ingest(1.0).await.unwrap().status(), StatusCode::CREATED);
        assert_eq!(sum(&get_json(&client, &query).await), 8.0);
    }
}

/// The OpenAPI document is generated from the same annotations the router
/// is built from; every route of DESIGN.md section 4 is in it, with its
/// methods, and it is served at /api/v1/openapi.json.
#[tokio::test]
async fn openapi_document_lists_every_route() {
    let store = stores().await.remove(0);
    let base = spawn(AppState::new(store, 1)).await;
    let doc: Value = admin_client()
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let expected: &[(&str, &[&str])] = &[
        ("/health", &["get"]),
        ("/runs", &["get", "post"]),
        ("/runs/{id}", &["get", "put", "delete"]),
        ("/runs/{id}/results", &["get", "post"]),
        ("/runs/{id}/recommendations", &["get", "post"]),
        ("/rebalancing", &["get", "post"]),
        ("/rebalancing/{id}", &["get", "put", "delete"]),
        ("/metrics", &["get", "post"]),
        ("/keys", &["get", "post"]),
        ("/keys/{id}", &["delete"]),
        ("/audit", &["get"]),
        ("/dashboard", &["get"]),
    ];
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in expected {
        let full = if *path == "/health" {
            path.to_string()
        } else {
            format!("{BASE}{path}")
        };
        let item = paths
            .get(&full)
            .unwrap_or_else(|| panic!("{full} missing from the OpenAPI document"));
        for m in *methods {
            assert!(item.get(*m).is_some(), "{m} {full} missing");
        }
    }
    // Nothing undocumented beyond the expected set, nothing expected missing.
    let count: usize = paths
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(count, expected.iter().map(|(_, m)| m.len()).sum::<usize>());
    // Both credentials are declared, and required everywhere but /health.
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    assert_eq!(doc["security"].as_array().unwrap().len(), 2);
    assert_eq!(doc["paths"]["/health"]["get"]["security"], json!([{}]));
    for schema in [
        "Run",
        "Recommendation",
        "Rebalancing",
        "MetricPoint",
        "ProblemDoc",
        "CreateRun",
    ] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "schema {schema} missing"
        );
    }
}

/// A run's objectives, constraints and horizon shape its solve, and
/// `POST /runs/{id}/results` solves the run's problem again under other ones
/// without storing anything.
#[tokio::test]
async fn run_settings_steer_the_solve_and_what_if_results_store_nothing() {
    for store in stores().await {
        let base = spawn(AppState::new(store, 2)).await;
        let client = admin_client();
        let fleet = format!("fleet-{}", new_id());
        let (_, free_url) = post_run(&client, &base, &fleet, "free").await;
        assert_eq!(wait_final(&client, &free_url).await["status"], "succeeded");
        let free = get_json(&client, &format!("{free_url}/results")).await;
        let free_cost = free["report"]["objectives"]["move_cost"].as_f64().unwrap();
        assert!(free_cost > 0.0, "{free}");

        // A budget of half what the free optimum spends, and a horizon.
        let resp = client
            .post(format!("{base}{BASE}/runs"))
            .json(
                &json!({"fleet_id": fleet, "name": "tight", "problem": manhattan(),
                "objectives": {"service": 2.0},
                "constraints": {"budget": free_cost / 2.0, "min_coverage": 1},
                "horizon": {"periods": 2, "period_minutes": 15.0}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let created: Value = resp.json().await.unwrap();
        assert_eq!(created["spec"]["constraints"]["min_coverage"], 1);
        let tight_url = format!("{base}{BASE}/runs/{}", created["id"].as_str().unwrap());
        assert_eq!(wait_final(&client, &tight_url).await["status"], "succeeded");
        let tight = get_json(&client, &format!("{tight_url}/results")).await;
        let report = &tight["report"];
        assert!(report["budget"]["spent"].as_f64().unwrap() <= free_cost / 2.0 + 1e-9);
        assert_eq!(report["settings"]["objectives"]["service"], 2.0);
        assert_eq!(
            report["zones_after"][0]["vehicles_per_period"]
                .as_array()
                .unwrap()
                .len(),
            2
        );

        // What-if: no service value at all means moving nobody is best.
        let recs_before = get_json(&client, &format!("{free_url}/recommendations")).await;
        let resp = client
            .post(format!("{free_url}/results"))
            .json(&json!({"objectives": {"service": 0.0, "coverage": 0.0}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let what_if: Value = resp.json().await.unwrap();
        assert_eq!(what_if["what_if"], true);
        assert!(what_if["recommendations"].as_array().unwrap().is_empty());
        assert_eq!(what_if["report"]["objectives"]["move_cost"], 0.0);
        assert_eq!(what_if["stored_objective"], free["objective"]);
        // An empty what-if reproduces the stored result exactly.
        let same: Value = client
            .post(format!("{free_url}/results"))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(same["objective"], free["objective"]);
        assert_eq!(same["report"]["moves"], free["report"]["moves"]);
        // Nothing stored: results and recommendations unchanged.
        assert_eq!(
            get_json(&client, &format!("{free_url}/results")).await,
            free
        );
        assert_eq!(
            get_json(&client, &format!("{free_url}/recommendations")).await,
            recs_before
        );

        // Bad input names the field; unknown runs are 404.
        let cases = [
            (
                json!({"objectives": {"service": -1}}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "objectives.service",
            ),
            (
                json!({"constraints": {"budget": "lots"}}),
                StatusCode::BAD_REQUEST,
                "constraints.budget",
            ),
            (
                json!({"horizon": {"periods": 0, "period_minutes": 5}}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "horizon.periods",
            ),
            (json!({"speed": 1}), StatusCode::BAD_REQUEST, "speed"),
        ];
        for (body, status, field) in cases {
            let resp = client
                .post(format!("{free_url}/results"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let (got, got_field) = problem_field(resp).await;
            assert_eq!(got, status, "{body}");
            assert!(
                got_field.as_deref().unwrap_or("").contains(field),
                "{body}: {got_field:?}"
            );
        }
        let resp = client
            .post(format!("{base}{BASE}/runs/{}/results", new_id()))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(problem_field(resp).await.0, StatusCode::NOT_FOUND);
        // Settings are checked when the run is created: nothing stored.
        let resp = client
            .post(format!("{base}{BASE}/runs"))
            .json(
                &json!({"fleet_id": fleet, "name": "bad", "problem": manhattan(),
                "objectives": {"cost": -2.0}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            problem_field(resp).await,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("objectives.cost".into())
            )
        );
        let list = get_json(&client, &format!("{base}{BASE}/runs?fleet_id={fleet}")).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 2);
    }
}

/// A grid city big enough that its what-if solve takes far longer than a
/// few milliseconds.
fn big_city(side: usize) -> Value {
    let zones: Vec<Value> = (0..side * side)
        .map(|i| {
            let (r, c) = (i / side, i % side);
            json!({"id": format!("g{i}"), "lat": 40.70 + r as f64 * 0.004, "lon": -74.0 + c as f64 * 0.005,
                   "idle": (i * 7) % 11, "target": (i * 5) % 9, "min_vehicles": (i % 3).min((i * 5) % 9)})
        })
        .collect();
    json!({"zones": zones, "travel": {"metric": "haversine", "detour_factor": 1.3},
           "costs": {"per_km": 0.6, "unmet_penalty": 15.0, "coverage_penalty": 5.0},
           "neighbours": 8, "pareto_points": 21})
}

/// A request that outlives the time limit is answered 503 with a problem
/// document, and the service goes on answering.
#[tokio::test]
async fn slow_requests_are_cut_off_with_503() {
    let store = stores().await.remove(0);
    // The run is created through a service with the default limit (storing
    // a 576-zone problem may itself take more than 50 ms on a busy machine);
    // the slow what-if goes to one with a 50 ms limit on the same database.
    let roomy = spawn(AppState::new(store.clone(), 2)).await;
    let state = AppState::new(store, 2).with_request_timeout(Duration::from_millis(50));
    let base = spawn(state).await;
    let client = admin_client();
    let created: Value = client
        .post(format!("{roomy}{BASE}/runs"))
        .json(&json!({"fleet_id": "f", "name": "big", "problem": big_city(24)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!("{base}{BASE}/runs/{}", created["id"].as_str().unwrap());
    let started = Instant::now();
    let resp = client
        .post(format!("{url}/results"))
        .json(&json!({"horizon": {"periods": 24, "period_minutes": 10.0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem_field(resp).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The service goes on answering. Its 50 ms limit also applies to /health,
    // whose database ping can wait behind the other service's big write on
    // the one SQLite connection: polled until healthy, within seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = client.get(format!("{base}/health")).send().await.unwrap();
        if health.status() == StatusCode::OK {
            break;
        }
        assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "never healthy again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Large documents are gzip-compressed for clients that accept it.
#[tokio::test]
async fn responses_are_compressed_when_the_client_accepts_gzip() {
    let store = stores().await.remove(0);
    let base = spawn(AppState::new(store, 1)).await;
    let client = admin_client();
    let url = format!("{base}/api/v1/openapi.json");
    let plain = client.get(&url).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap();
    let gz = client
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let gz = gz.bytes().await.unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
    assert!(
        gz.len() * 3 < plain.len(),
        "{} vs {}",
        gz.len(),
        plain.len()
    );
}

// Found by schemathesis (`make schemathesis`, README "API robustness").

/// A method a route does not serve is 405 naming the ones it does (RFC
/// 9110), on public and secured routes alike; it used to be 403 "this route
/// has no access rule" (and an error log line). HEAD is GET without a body.
#[tokio::test]
async fn an_unserved_method_is_405_with_allow() {
    let store = stores().await.remove(0);
    let base = spawn(AppState::new(store, 1)).await;
    let client = admin_client();
    for (method, path, allow) in [
        ("TRACE", "/health".to_owned(), "GET"),
        ("PATCH", format!("{BASE}/runs"), "GET, POST"),
        ("PATCH", format!("{BASE}/runs/x"), "GET, PUT, DELETE"),
        ("PUT", format!("{BASE}/keys"), "GET, POST"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = client
            .request(method.clone(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["allow"], allow, "{method} {path}");
        let (status, _) = problem_field(resp).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
    let head = client.head(format!("{base}/health")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
}

/// "1 to 200 characters" counts characters, not UTF-8 bytes: 200 `é` (400
/// bytes) are a valid name; 201 are not.
#[tokio::test]
async fn names_are_limited_in_characters_not_bytes() {
    let store = stores().await.remove(0);
    let base = spawn(AppState::new(store, 1)).await;
    let client = admin_client();
    let (ok, long) = ("é".repeat(200), "é".repeat(201));
    for (name, expected) in [
        (&ok, StatusCode::CREATED),
        (&long, StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let resp = client
            .post(format!("{base}{BASE}/runs"))
            .json(&json!({"fleet_id": "nyc", "name": name, "problem": manhattan()}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            expected,
            "run name of {} chars",
            name.chars().count()
        );
        let resp = client
            .post(format!("{base}{BASE}/keys"))
            .json(&json!({"name": name, "role": "viewer", "fleets": ["nyc"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            expected,
            "key name of {} chars",
            name.chars().count()
        );
    }
}

/// A move needs both zones: an empty `to` is 422 naming the move, like an
/// empty `from` (it used to be accepted).
#[tokio::test]
async fn a_move_to_an_empty_zone_is_refused() {
    for store in stores().await {
        let base = spawn(AppState::new(store, 1)).await;
        let resp = admin_client()
            .post(format!("{base}{BASE}/rebalancing"))
            .json(&json!({"fleet_id": "nyc", "moves": [
                {"from": "a", "to": "b", "vehicles": 1},
                {"from": "a", "to": "", "vehicles": 1},
            ]}))
            .send()
            .await
            .unwrap();
        let (status, field) = problem_field(resp).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("moves[1]"));
    }
}

/// The OpenAPI document describes what is served: error bodies as
/// `application/problem+json`; the 401/403/404/429/503 of the layers in
/// front of every secured handler, and the 400/413/415 of every body; a key's
/// `fleets` as `"*"` or a list; a metric point's `ts` as a time, epoch ms or
/// null, and the body of `POST /metrics` as one point or a list.
#[tokio::test]
async fn openapi_document_describes_what_is_served() {
    let store = stores().await.remove(0);
    let base = spawn(AppState::new(store, 1)).await;
    let doc: Value = get_json(&admin_client(), &format!("{base}/api/v1/openapi.json")).await;
    let problem_ref = json!({"$ref": "#/components/schemas/ProblemDoc"});
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let responses = op["responses"].as_object().unwrap();
            for (status, response) in responses {
                if let Some(content) = response.get("content").and_then(Value::as_object) {
                    for (media, c) in content {
                        if c["schema"] == problem_ref {
                            assert_eq!(
                                media, "application/problem+json",
                                "{method} {path} {status}"
                            );
                        }
                    }
                }
            }
            let mut expected = vec!["503"];
            if path != "/health" {
                expected.extend(["401", "403", "404", "429"]);
                assert!(responses["429"]["headers"].get("Retry-After").is_some());
            }
            if op.get("requestBody").is_some() {
                expected.extend(["400", "413", "415"]);
            }
            for status in expected {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
        }
    }
    assert!(operations >= 21, "{operations}");
    let schemas = &doc["components"]["schemas"];
    let fleets = &schemas["ApiKey"]["properties"]["fleets"]["oneOf"];
    assert_eq!(fleets[0]["enum"], json!(["*"]), "{fleets}");
    assert_eq!(fleets[1]["type"], "array", "{fleets}");
    let ts = &schemas["PointIn"]["properties"]["ts"]["oneOf"];
    let types: Vec<&Value> = ts.as_array().unwrap().iter().map(|t| &t["type"]).collect();
    assert_eq!(types, [&json!("string"), &json!("integer"), &json!("null")]);
    let body = &doc["paths"][format!("{BASE}/metrics")]["post"]["requestBody"];
    let body = &body["content"]["application/json"]["schema"];
    assert_eq!(body["$ref"], "#/components/schemas/PointsIn", "{body}");
    assert_eq!(schemas["PointsIn"]["oneOf"].as_array().unwrap().len(), 2);
}

/// A NUL character in a path, query or body string is refused naming the
/// field, on both stores alike (PostgreSQL used to answer 503: it cannot
/// store or even compare text holding NUL), and nothing is stored; a
/// refused write is still audited.
#[tokio::test]
async fn nul_characters_are_refused_naming_the_field() {
    for store in stores().await {
        let base = spawn(AppState::new(store, 1)).await;
        let client = admin_client();
        let fleet = format!("fleet-{}", new_id());
        for (url, field) in [
            (format!("{base}{BASE}/runs/a%00b"), "id"),
            (format!("{base}{BASE}/runs?fleet_id=a%00b"), "fleet_id"),
            (format!("{base}{BASE}/audit?subject=%00"), "subject"),
        ] {
            let (status, got) = problem_field(client.get(&url).send().await.unwrap()).await;
            assert_eq!(
                (status, got.as_deref()),
                (StatusCode::BAD_REQUEST, Some(field)),
                "{url}"
            );
        }
        let mut problem = manhattan();
        problem["zones"][1]["id"] = json!("z\u{0}");
        for (path, body, field) in [
            (
                "runs",
                json!({"fleet_id": "a\u{0}b", "name": "n", "problem": manhattan()}),
                "fleet_id",
            ),
            (
                "runs",
                json!({"fleet_id": fleet, "name": "n", "problem": problem}),
                "problem.zones[1].id",
            ),
            (
                "metrics",
                json!([{"name": "m", "value": 1, "fleet_id": fleet, "labels": {"k": "\u{0}"}}]),
                "[0].labels.k",
            ),
            (
                "keys",
                json!({"name": "k", "role": "viewer", "fleets": [fleet, "\u{0}"]}),
                "fleets[1]",
            ),
        ] {
            let resp = client
                .post(format!("{base}{BASE}/{path}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let (status, got) = problem_field(resp).await;
            assert_eq!(
                (status, got.as_deref()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
                "{body}"
            );
        }
        let list: Value = get_json(&client, &format!("{base}{BASE}/runs?fleet_id={fleet}")).await;
        assert!(list["items"].as_array().unwrap().is_empty(), "{list}");
        let audit: Value = get_json(&client, &format!("{base}{BASE}/audit?limit=500")).await;
        let refused = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["outcome"] == 422)
            .count();
        assert!(refused >= 4, "{audit}");
    }
}

/// Metric values, epoch-ms times and buckets are bounded by 1e15 (beyond:
/// 422 naming the point's field, 400 for the bucket). Two values near
/// f64::MAX used to be stored, and aggregating them failed on PostgreSQL (503
/// "value out of range: overflow") while SQLite answered a null sum. At the
/// limits, aggregation works on both stores.
#[tokio::test]
async fn metric_values_and_times_are_bounded_so_aggregates_cannot_overflow() {
    for store in stores().await {
        let base = spawn(AppState::new(store, 1)).await;
        let client = admin_client();
        let fleet = format!("fleet-{}", new_id());
        let url = format!("{base}{BASE}/metrics");
        for (point, field) in [
            (
                json!({"name": "big", "value": 1e300, "fleet_id": fleet}),
                "[0].value",
            ),
            (
                json!({"name": "big", "value": 1, "ts": i64::MIN, "fleet_id": fleet}),
                "[0].ts",
            ),
        ] {
            let resp = client.post(&url).json(&point).send().await.unwrap();
            let (status, got) = problem_field(resp).await;
            assert_eq!(
                (status, got.as_deref()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some(field))
            );
        }
        let (far, value) = (1_000_000_000_000_000_i64, 1e15);
        let points = json!([
            {"name": "big", "value": value, "ts": far, "fleet_id": fleet},
            {"name": "big", "value": value, "ts": far, "fleet_id": fleet},
            {"name": "big", "value": -value, "ts": -far, "fleet_id": fleet},
        ]);
        let resp = client.post(&url).json(&points).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        for bucket in ["1", "1d", "1000000000000000ms"] {
            let query = format!("{url}?fleet_id={fleet}&bucket={bucket}");
            let resp = client.get(&query).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "bucket {bucket}");
            let body: Value = resp.json().await.unwrap();
            let sum: f64 = body["buckets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["sum"].as_f64().unwrap())
                .sum();
            assert_eq!(sum, value, "{body}");
        }
        let resp = client
            .get(format!("{url}?bucket=1000000000000001ms"))
            .send()
            .await
            .unwrap();
        let (status, field) = problem_field(resp).await;
        assert_eq!(
            (status, field.as_deref()),
            (StatusCode::BAD_REQUEST, Some("bucket"))
        );
    }
}
