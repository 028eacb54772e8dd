//! The whole service, embedded (no servers): `fleet-optimization serve`
//! replays the bundled NYC trips through the pipeline; the fleet's
//! continuous run shows live results and recommendations over the API;
//! SIGTERM stops it cleanly, and a restart resumes from the stored
//! checkpoint instead of starting over.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use serde_json::Value;

/// The admin key the service is started with (`ADMIN_API_KEY`).
const KEY: &str = "service-test-admin-key-0123456789";

fn start(data_dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fleet-optimization"))
        .args(["serve", "--port", &port.to_string()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATA_DIR", data_dir)
        .env("REPLAY_SPEEDUP", "20000")
        .env("WINDOW_SECONDS", "3600")
        .env("LOG_LEVEL", "warn")
        .env("ADMIN_API_KEY", KEY)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_ADDR")
        .env_remove("KAFKA_BROKERS")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn get(port: u16, path: &str) -> Option<Value> {
    let out = Command::new("curl")
        .args(["-sf", "-H", &format!("x-api-key: {KEY}")])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())?
}

fn post(port: u16, path: &str, body: &str) -> (u16, Value) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-H",
            "content-type: application/json",
            "-H",
            &format!("x-api-key: {KEY}"),
            "-d",
            body,
        ])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// Polls `f` until it returns Some, for at most `secs` seconds.
fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(200));
    }
}

const RUNS: &str = "/api/v1/fleet-optimization/runs";

/// The fleet's continuous run once it has a result: (run id, window end).
fn continuous(port: u16) -> Option<(String, String)> {
    let runs = get(port, &format!("{RUNS}?fleet_id=nyc"))?;
    let run = runs["items"]
        .as_array()?
        .iter()
        .find(|r| r["mode"] == "continuous")?
        .clone();
    let id = run["id"].as_str()?.to_owned();
    let results = get(port, &format!("{RUNS}/{id}/results"))?;
    let end = results["report"]["window_end"].as_str()?.to_owned();
    Some((id, end))
}

fn stop(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(code) = child.try_wait().unwrap() {
            assert!(code.success(), "exit status {code}");
            return;
        }
        assert!(Instant::now() < deadline, "no exit 20 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn embedded_service_rebalances_the_nyc_replay_live_and_resumes_after_restart() {
    let dir = std::env::temp_dir().join(format!("fleet-service-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_port();
    let child = start(&dir, port);
    let (run_id, first_end) = eventually(60, || continuous(port));
    // Recommendations accumulate as windows close.
    let recs = eventually(60, || {
        let r = get(port, &format!("{RUNS}/{run_id}/recommendations"))?;
        (r["items"].as_array()?.len() >= 3).then_some(r)
    });
    assert!(recs["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["fleet_id"] == "nyc"));
    // A continuous run with an inline problem is refused, naming the field.
    let (code, problem) = post(
        port,
        RUNS,
        r#"{"fleet_id":"nyc","name":"x","mode":"continuous","problem":{}}"#,
    );
    assert_eq!((code, problem["field"].as_str()), (422, Some("problem")));
    let before = eventually(30, || {
        let (_, end) = continuous(port)?;
        (end > first_end).then_some(end)
    });
    stop(child);

    // Restart on the same data: the same continuous run goes on after the
    // last stored window, no new run and no window again.
    let child = start(&dir, port);
    let after = eventually(60, || {
        let (id, end) = continuous(port)?;
        assert_eq!(id, run_id);
        (end > before).then_some(end)
    });
    assert!(after > before);
    let runs = get(port, &format!("{RUNS}?fleet_id=nyc")).unwrap();
    assert_eq!(runs["items"].as_array().unwrap().len(), 1);
    stop(child);
    // Everything the service did is in its events: replaying them alone
    // rebuilds the stored runs and recommendations.
    let out = Command::new(env!("CARGO_BIN_EXE_fleet-optimization"))
        .arg("replay-events")
        .env("DATA_DIR", &dir)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["matches"], true, "{report}");
    assert!(
        report["rebuilt"]["recommendation"].as_u64().unwrap() >= 3,
        "{report}"
    );
    assert_eq!(report["rebuilt"]["run"], 1, "{report}");
    // The embedded analytics were written at stop too.
    assert!(dir.join("analytics/solves").read_dir().unwrap().count() > 0);
    let _ = std::fs::remove_dir_all(&dir);
}
