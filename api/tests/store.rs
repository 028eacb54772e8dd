//! The store against the real databases: a SQLite file and the PostgreSQL
//! server (`TEST_DATABASE_URL`, default the local `test` database). Every
//! test runs the same body on both.

use fleet_api::run::{RunMode, RunStatus};
use fleet_api::store::{new_id, now_ms, NewRun, Recommendation, StoreError};

mod common;
use common::stores;

fn new_run(fleet: &str, name: &str) -> NewRun {
    NewRun {
        fleet_id: fleet.into(),
        name: name.into(),
        mode: RunMode::OneShot,
        spec: serde_json::json!({"objectives": {"cost": 1.0}, "problem": {"zones": []}}),
    }
}

#[tokio::test]
async fn runs_round_trip_and_page_in_order() {
    for store in stores().await {
        let fleet = format!("fleet-{}", new_id());
        let mut ids = Vec::new();
        for k in 0..5 {
            let run = store
                .create_run(new_run(&fleet, &format!("run {k}")))
                .await
                .unwrap();
            assert_eq!(run.status, RunStatus::Pending);
            assert_eq!(store.get_run(&run.id).await.unwrap(), run);
            ids.push(run.id);
        }
        // Pages of 2 over this fleet give all five, in creation order, once.
        let (mut seen, mut cursor) = (Vec::new(), None::<String>);
        loop {
            let page = store
                .list_runs(Some(&fleet), None, 2, cursor.as_deref())
                .await
                .unwrap();
            assert!(page.items.len() <= 2);
            seen.extend(page.items.iter().map(|r| r.id.clone()));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, ids, "{:?}", store.backend());
        // Filters: another fleet and another status see nothing of these.
        let other = store
            .list_runs(Some("no-such-fleet"), None, 10, None)
            .await
            .unwrap();
        assert!(other.items.is_empty());
        let running = store
            .list_runs(Some(&fleet), Some(RunStatus::Running), 10, None)
            .await
            .unwrap();
        assert!(running.items.is_empty());
        assert!(matches!(
            store.get_run("nope").await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.list_runs(None, None, 10, Some("garbage")).await,
            Err(StoreError::NotFound)
        ));
    }
}

#[tokio::test]
async fn status_changes_follow_the_lifecycle() {
    for store in stores().await {
        let fleet = format!("fleet-{}", new_id());
        let run = store
            .create_run(new_run(&fleet, "lifecycle"))
            .await
            .unwrap();
        // Illegal: pending -> succeeded. Nothing changes.
        let err = store
            .transition(&run.id, RunStatus::Succeeded, None)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::Conflict {
                from: RunStatus::Pending,
                to: RunStatus::Succeeded
            }
        ));
        assert_eq!(
            store.get_run(&run.id).await.unwrap().status,
            RunStatus::Pending
        );

        let running = store
            .transition(&run.id, RunStatus::Running, None)
            .await
            .unwrap();
        assert_eq!(running.status, RunStatus::Running);
        let failed = store
            .transition(&run.id, RunStatus::Failed, Some("solver exploded"))
            .await
            .unwrap();
        assert_eq!(
            (failed.status, failed.error.as_deref()),
            (RunStatus::Failed, Some("solver exploded"))
        );
        // Final: nothing leaves it.
        assert!(store
            .transition(&run.id, RunStatus::Running, None)
            .await
            .is_err());
        assert!(matches!(
            store.transition("nope", RunStatus::Running, None).await,
            Err(StoreError::NotFound)
        ));
    }
}

#[tokio::test]
async fn outcomes_are_stored_atomically_and_deleted_with_the_run() {
    for store in stores().await {
        let fleet = format!("fleet-{}", new_id());
        let run = store.create_run(new_run(&fleet, "outcome")).await.unwrap();
        let rec = |from: &str, to: &str| Recommendation {
            id: new_id(),
            run_id: run.id.clone(),
            fleet_id: fleet.clone(),
            from_zone: from.into(),
            to_zone: to.into(),
            vehicles: 3,
            km: 2.5,
            cost: 4.5,
            benefit_per_vehicle: 13.5,
            explanation: "zone a has surplus".into(),
            status: "proposed".into(),
            created_at: now_ms(),
        };
        let recs = vec![rec("a", "b"), rec("c", "d")];
        let report = serde_json::json!({"objectives": {"unmet": 0}, "pareto": [1, 2]});
        store
            .save_outcome(&run.id, 197.31, &report, &recs)
            .await
            .unwrap();
        assert_eq!(
            store.get_result(&run.id).await.unwrap(),
            (197.31, report.clone())
        );
        assert_eq!(store.list_recommendations(&run.id).await.unwrap(), recs);
        // A second outcome for the same run is refused and changes nothing.
        assert!(store
            .save_outcome(&run.id, 1.0, &report, &[rec("x", "y")])
            .await
            .is_err());
        assert_eq!(store.list_recommendations(&run.id).await.unwrap().len(), 2);

        store.delete_run(&run.id).await.unwrap();
        assert!(matches!(
            store.get_run(&run.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.get_result(&run.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(store
            .list_recommendations(&run.id)
            .await
            .unwrap()
            .is_empty());
        assert!(matches!(
            store.delete_run(&run.id).await,
            Err(StoreError::NotFound)
        ));
    }
}

/// Every change of runs, recommendations and rebalancing operations is an
/// event (written by the database in the same transaction), and replaying
/// the events alone rebuilds exactly the stored state; the event log cannot
/// be edited.
#[tokio::test]
async fn replaying_the_events_rebuilds_the_stored_state() {
    use fleet_api::rebalancing::{PlannedMove, RebalancingStatus};
    for store in stores().await {
        let fleet = format!("events-{}", new_id());
        let run = store
            .create_run(NewRun {
                fleet_id: fleet.clone(),
                name: "events".into(),
                mode: RunMode::OneShot,
                spec: serde_json::json!({}),
            })
            .await
            .unwrap();
        store
            .transition(&run.id, RunStatus::Running, None)
            .await
            .unwrap();
        let recs: Vec<Recommendation> = (0..3)
            .map(|k| Recommendation {
                id: new_id(),
                run_id: run.id.clone(),
                fleet_id: fleet.clone(),
                from_zone: format!("z{k}"),
                to_zone: "hub".into(),
                vehicles: k + 1,
                km: 1.5,
                cost: 0.9,
                benefit_per_vehicle: 3.0,
                explanation: "because".into(),
                status: "proposed".into(),
                created_at: 1,
            })
            .collect();
        store
            .save_outcome(&run.id, 1.0, &serde_json::json!({}), &recs)
            .await
            .unwrap();
        store
            .transition(&run.id, RunStatus::Succeeded, None)
            .await
            .unwrap();
        store
            .decide_recommendations(&run.id, &[recs[0].id.clone()], "rejected")
            .await
            .unwrap();
        let (op, _) = store
            .create_rebalancing(&fleet, Some(&run.id), &[recs[1].id.clone()], Vec::new())
            .await
            .unwrap();
        store
            .transition_rebalancing(&op.id, RebalancingStatus::InProgress)
            .await
            .unwrap();
        let (other, _) = store
            .create_rebalancing(
                &fleet,
                None,
                &[],
                vec![PlannedMove {
                    from: "a".into(),
                    to: "b".into(),
                    vehicles: 2,
                }],
            )
            .await
            .unwrap();
        store.delete_rebalancing(&other.id).await.unwrap();

        let report = store.replay_events().await.unwrap();
        assert!(report.matches(), "{report:?}");
        assert!(report.events >= 12, "{report:?}");
        // The fleet's own history, in order.
        let events = store.events_after(0, 1_000_000).await.unwrap();
        let mine: Vec<(String, String)> = events
            .iter()
            .filter(|e| e.fleet_id.as_deref() == Some(fleet.as_str()))
            .map(|e| (e.aggregate.clone(), e.kind.clone()))
            .collect();
        let count = |aggregate: &str, kind: &str| {
            mine.iter()
                .filter(|(a, k)| a == aggregate && k == kind)
                .count()
        };
        assert_eq!(count("run", "created"), 1);
        assert_eq!(count("run", "changed"), 2);
        assert_eq!(count("recommendation", "created"), 3);
        assert_eq!(count("recommendation", "changed"), 2);
        assert_eq!(count("rebalancing", "created"), 2);
        assert_eq!(count("rebalancing", "changed"), 1);
        assert_eq!(count("rebalancing", "deleted"), 1);
        let last_run_state = events
            .iter()
            .rev()
            .find(|e| e.aggregate_id == run.id)
            .and_then(|e| e.state.clone())
            .unwrap();
        assert_eq!(last_run_state["status"], "succeeded");

        // The log cannot be edited.
        for statement in [
            "UPDATE domain_events SET kind = 'x'",
            "DELETE FROM domain_events",
        ] {
            let err = sqlx::query(statement)
                .execute(store.pool())
                .await
                .unwrap_err();
            assert!(err.to_string().contains("append-only"), "{err}");
        }
    }
}
