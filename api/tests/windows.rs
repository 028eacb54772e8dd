//! The pipeline's persistence against the real databases (SQLite file and
//! PostgreSQL): each window once, recommendations under the fleet's
//! continuous run, pausing by cancelling it, checkpoints, dead letters.

use fleet_api::run::{RunMode, RunStatus};
use fleet_api::store::{new_id, NewRun};
use fleet_api::windows::{DeadLetterRow, StreamMove, StreamWindow, WindowSaved};
use serde_json::json;

mod common;
use common::stores;

fn mv(from: &str, to: &str, vehicles: i64) -> StreamMove {
    StreamMove {
        from_zone: from.into(),
        to_zone: to.into(),
        vehicles,
        km: 2.0,
        cost: 1.2 * vehicles as f64,
        benefit_per_vehicle: 13.8,
        explanation: "surplus to deficit".into(),
    }
}

fn window(
    fleet: &str,
    end_ms: i64,
    changed: Vec<StreamMove>,
    withdrawn: Vec<(&str, &str)>,
) -> StreamWindow {
    StreamWindow {
        fleet_id: fleet.into(),
        start_ms: end_ms - 1000,
        end_ms,
        objective: 42.0 + end_ms as f64,
        report: json!({"window_end": end_ms}),
        changed,
        withdrawn: withdrawn
            .into_iter()
            .map(|(a, b)| (a.into(), b.into()))
            .collect(),
        checkpoint: json!({"closed_until": end_ms}),
    }
}

#[tokio::test]
async fn windows_are_stored_once_and_feed_the_continuous_run() {
    for store in stores().await {
        let fleet = format!("fleet-{}", new_id());
        let w1 = window(&fleet, 1000, vec![mv("a", "b", 2), mv("a", "c", 1)], vec![]);
        let WindowSaved::Saved {
            run_id: Some(run_id),
            recommendations: 2,
        } = store.save_window(&w1).await.unwrap()
        else {
            panic!("first window not saved with a new continuous run")
        };
        // A replay of the same window changes nothing.
        assert_eq!(
            store.save_window(&w1).await.unwrap(),
            WindowSaved::AlreadySaved
        );
        let run = store.get_run(&run_id).await.unwrap();
        assert_eq!(
            (run.mode, run.status),
            (RunMode::Continuous, RunStatus::Running)
        );
        assert_eq!(store.list_recommendations(&run_id).await.unwrap().len(), 2);

        // Next window: a->b changes to 3 vehicles, a->c is withdrawn.
        let w2 = window(&fleet, 2000, vec![mv("a", "b", 3)], vec![("a", "c")]);
        assert_eq!(
            store.save_window(&w2).await.unwrap(),
            WindowSaved::Saved {
                run_id: Some(run_id.clone()),
                recommendations: 1
            }
        );
        let recs = store.list_recommendations(&run_id).await.unwrap();
        let status = |from: &str, to: &str, n: i64| {
            recs.iter()
                .find(|r| r.from_zone == from && r.to_zone == to && r.vehicles == n)
                .map(|r| r.status.clone())
        };
        assert_eq!(status("a", "b", 2).as_deref(), Some("expired"));
        assert_eq!(status("a", "c", 1).as_deref(), Some("expired"));
        assert_eq!(status("a", "b", 3).as_deref(), Some("proposed"));
        // The run's live result is the newest window's.
        let (objective, report) = store.get_result(&run_id).await.unwrap();
        assert_eq!(
            (objective, report["window_end"].as_i64()),
            (w2.objective, Some(2000))
        );
        assert_eq!(store.window_ends(&fleet).await.unwrap(), vec![1000, 2000]);
        let checkpoints = store.checkpoints().await.unwrap();
        let mine = checkpoints.iter().find(|c| c.0 == fleet).unwrap();
        assert_eq!(
            (mine.1, mine.2["closed_until"].as_i64()),
            (2000, Some(2000))
        );

        // Cancelling the continuous run pauses the fleet: windows recorded, nothing recommended.
        store
            .transition(&run_id, RunStatus::Cancelled, None)
            .await
            .unwrap();
        let w3 = window(&fleet, 3000, vec![mv("b", "c", 1)], vec![]);
        assert_eq!(
            store.save_window(&w3).await.unwrap(),
            WindowSaved::Saved {
                run_id: None,
                recommendations: 0
            }
        );
        assert_eq!(store.list_recommendations(&run_id).await.unwrap().len(), 3);
        // A new continuous run resumes it.
        let resumed = store
            .create_run(NewRun {
                fleet_id: fleet.clone(),
                name: "again".into(),
                mode: RunMode::Continuous,
                spec: json!({}),
            })
            .await
            .unwrap();
        store
            .transition(&resumed.id, RunStatus::Running, None)
            .await
            .unwrap();
        let w4 = window(&fleet, 4000, vec![mv("b", "c", 1)], vec![]);
        assert_eq!(
            store.save_window(&w4).await.unwrap(),
            WindowSaved::Saved {
                run_id: Some(resumed.id.clone()),
                recommendations: 1
            }
        );
    }
}

#[tokio::test]
async fn dead_letters_are_kept_once_per_position_with_their_reason() {
    for store in stores().await {
        let id = format!("test:{}:7", new_id());
        let row = DeadLetterRow {
            id: id.clone(),
            source: "test".into(),
            reason: "lat: 91 is outside [-90, 90]".into(),
            payload: "é".repeat(5000), // longer than kept; cut on a character boundary
            received_at: 1,
        };
        let (before, _) = store.dead_letters(1).await.unwrap();
        store
            .insert_dead_letters(std::slice::from_ref(&row))
            .await
            .unwrap();
        store.insert_dead_letters(&[row]).await.unwrap();
        let (after, newest) = store.dead_letters(1000).await.unwrap();
        assert_eq!(after, before + 1);
        assert!(newest
            .iter()
            .any(|(i, reason)| i == &id && reason.contains("lat")));
    }
}
