//! The web dashboard against the real service on a random port (SQLite file
//! and PostgreSQL): the page and its assets with their Content-Security-
//! Policy, the data endpoint before and after a pipeline window is stored,
//! the event stream announcing that window, and refusal without a key.

use std::time::{Duration, Instant};

use fleet_api::dashboard::CONTENT_SECURITY_POLICY;
use fleet_api::http::{AppState, BASE};
use fleet_api::store::new_id;
use fleet_api::windows::{StreamMove, StreamWindow};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

mod common;
use common::{admin_client, spawn, stores};

/// A window of three zones: 4 has a surplus of 3, 7 a deficit of 2, 9 is
/// balanced; the plan moves 2 vehicles from 4 to 7.
fn window(fleet: &str, end_ms: i64) -> StreamWindow {
    let zone = |id: &str, lat: f64, lon: f64, supply: u32, target: u32| {
        json!({"id": id, "name": format!("zone {id}"), "lat": lat, "lon": lon,
               "supply": supply, "target": target, "floor": 1})
    };
    let planned = json!({"from_zone": "4", "to_zone": "7", "vehicles": 2, "km": 3.5, "cost": 2.1,
                         "benefit_per_vehicle": 12.9, "explanation": "4 has 3 spare, 7 lacks 2"});
    StreamWindow {
        fleet_id: fleet.into(),
        start_ms: end_ms - 300_000,
        end_ms,
        objective: 4.2,
        report: json!({
            "zone_balance": [
                zone("4", 40.7237, -73.9770, 5, 2),
                zone("7", 40.7612, -73.9197, 0, 2),
                zone("9", 40.7519, -73.7876, 1, 1),
            ],
            "moves": [planned],
        }),
        changed: vec![StreamMove {
            from_zone: "4".into(),
            to_zone: "7".into(),
            vehicles: 2,
            km: 3.5,
            cost: 2.1,
            benefit_per_vehicle: 12.9,
            explanation: "4 has 3 spare, 7 lacks 2".into(),
        }],
        withdrawn: Vec::new(),
        checkpoint: json!({}),
    }
}

/// Reads server-sent events from `resp` until one whose data satisfies
/// `wanted`, or fails after 10 s.
async fn next_event(
    resp: &mut reqwest::Response,
    buffer: &mut String,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if !frame.lines().any(|l| l == "event: window") {
                continue; // keep-alive comments
            }
            let data = frame
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("a window event carries data");
            let data: Value = serde_json::from_str(data).unwrap();
            if wanted(&data) {
                return data;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, resp.chunk())
            .await
            .expect("no event within 10 s")
            .unwrap()
            .expect("the stream ended");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn the_page_assets_and_live_zone_data_are_served() {
    for store in stores().await {
        let base = spawn(AppState::new(store.clone(), 2).with_streaming(true)).await;
        let anonymous = Client::new();

        // The page and its assets: public, the right types, this origin only.
        for (path, content_type, marker) in [
            (
                "/",
                "text/html; charset=utf-8",
                "<script src=\"/dashboard.js\"",
            ),
            (
                "/dashboard.js",
                "text/javascript; charset=utf-8",
                "/dashboard/events",
            ),
            ("/dashboard.css", "text/css; charset=utf-8", ".zone"),
        ] {
            let resp = anonymous.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
            };
            assert_eq!(header("content-type").as_deref(), Some(content_type));
            assert_eq!(
                header("content-security-policy").as_deref(),
                Some(CONTENT_SECURITY_POLICY)
            );
            assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
            let body = resp.text().await.unwrap();
            assert!(body.contains(marker), "{path} lacks {marker}");
            // Nothing is loaded from elsewhere at run time.
            assert!(
                !body.contains("https://"),
                "{path} refers to another origin"
            );
        }

        // The data needs a credential.
        let fleet = format!("fleet-{}", new_id());
        let data_url = format!("{base}{BASE}/dashboard?fleet_id={fleet}");
        let events_url = format!("{base}{BASE}/dashboard/events?fleet_id={fleet}");
        for url in [&data_url, &events_url] {
            let resp = anonymous.get(url).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{url}");
        }

        // Before any window: no zones, no moves.
        let admin = admin_client();
        let empty: Value = admin
            .get(&data_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(empty["window"], Value::Null);
        assert_eq!(empty["zones"], json!([]));
        assert_eq!(empty["moves"], json!([]));
        assert_eq!(empty["latest_solved_run_id"], Value::Null);
        // An admin of every fleet must say which one, in 1 to 200 characters.
        let long = format!("?fleet_id={}", "x".repeat(201));
        for query in ["", "?fleet_id=", long.as_str()] {
            let resp = admin
                .get(format!("{base}{BASE}/dashboard{query}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
        }

        // The event stream answers at once with the current state (none)...
        let mut events = admin.get(&events_url).send().await.unwrap();
        assert_eq!(events.status(), StatusCode::OK);
        assert_eq!(
            events.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let mut buffer = String::new();
        let first = next_event(&mut events, &mut buffer, |_| true).await;
        assert_eq!(first, json!({"fleet_id": fleet, "window_end_ms": null}));

        // ...and announces the pipeline's next window.
        let end_ms = 1_551_398_400_000;
        store.save_window(&window(&fleet, end_ms)).await.unwrap();
        let announced = next_event(&mut events, &mut buffer, |d| {
            d["window_end_ms"] == json!(end_ms)
        })
        .await;
        assert_eq!(announced["fleet_id"], json!(fleet));
        drop(events);

        let view: Value = admin
            .get(&data_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(view["fleet_id"], json!(fleet));
        assert_eq!(view["window"]["end_ms"], json!(end_ms));
        assert_eq!(view["window"]["end"], json!("2019-03-01T00:00:00Z"));
        assert!(view["window"]["run_id"].is_string(), "{view}");
        let balances: Vec<(String, i64)> = view["zones"]
            .as_array()
            .unwrap()
            .iter()
            .map(|z| {
                (
                    z["id"].as_str().unwrap().to_owned(),
                    z["balance"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            balances,
            [("4".into(), 3), ("7".into(), -2), ("9".into(), 0)]
        );
        assert_eq!(view["zones"][0]["lat"], json!(40.7237));
        assert_eq!(view["moves"].as_array().unwrap().len(), 1);
        assert_eq!(view["moves"][0]["from_zone"], "4");
        assert_eq!(view["moves"][0]["to_zone"], "7");
        assert_eq!(view["moves"][0]["vehicles"], 2);

        // A solved one-shot run becomes the one whose Pareto front is charted.
        let problem: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../examples/manhattan.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let run: Value = admin
            .post(format!("{base}{BASE}/runs"))
            .json(&json!({"fleet_id": fleet, "name": "pareto", "problem": problem}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let view: Value = admin
                .get(&data_url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if view["latest_solved_run_id"] == run["id"] {
                break;
            }
            assert!(Instant::now() < deadline, "the run never showed: {view}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Documented like the other data routes; the never-ending stream is not.
        let doc: Value = admin
            .get(format!("{base}/api/v1/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.contains_key(&format!("{BASE}/dashboard")));
        assert!(!paths.contains_key(&format!("{BASE}/dashboard/events")));
        assert!(doc["components"]["schemas"]["Dashboard"].is_object());
    }
}

/// An open event stream never ends by itself; graceful shutdown ends it,
/// so the server still stops (the service exits on SIGTERM with dashboards open).
#[tokio::test]
async fn graceful_shutdown_ends_open_event_streams() {
    let store = stores().await.remove(0);
    common::install_admin_key(&store).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fleet_api::http::serve(
        listener,
        AppState::new(store, 1),
        None,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let mut events = admin_client()
        .get(format!("{base}{BASE}/dashboard/events?fleet_id=nyc"))
        .send()
        .await
        .unwrap();
    let mut buffer = String::new();
    next_event(&mut events, &mut buffer, |_| true).await;
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server waited on the open stream")
        .unwrap()
        .unwrap();
    // The stream ended cleanly rather than hanging.
    let rest = tokio::time::timeout(Duration::from_secs(5), events.chunk()).await;
    assert!(matches!(rest, Ok(Ok(None)) | Ok(Err(_))), "{rest:?}");
}
