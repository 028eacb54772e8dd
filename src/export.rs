//! Ships what the analytics store needs from the database besides the
//! pipeline's windows: metric points (the seed's five metrics and ingested
//! ones) and recommendation outcomes, to ClickHouse or, embedded, Parquet.
//! Every few seconds, in batches after a stored per-stream cursor; a batch
//! is written under a token made of its first and last id, so a batch
//! shipped again after a crash (before its cursor was stored) is dropped by
//! ClickHouse or replaces its own Parquet file.

use std::time::Duration;

use fleet_api::exports::{Cursor, SETTLE_MS};
use fleet_api::store::{now_ms, Store};
use fleet_pipeline::analytics::{AnalyticsStore, MetricRow, OutcomeRow};

/// How often the exporter looks for new rows.
pub const EVERY: Duration = Duration::from_secs(10);
/// Rows per batch.
const BATCH: usize = 1000;

/// Ships everything settled before `settled_before` (ms); returns how many
/// rows went out.
pub async fn export_once(
    store: &Store,
    analytics: &AnalyticsStore,
    settled_before: i64,
) -> Result<usize, String> {
    let mut shipped = 0;
    loop {
        let cursor = store
            .export_cursor("metrics")
            .await
            .map_err(|e| e.to_string())?;
        let (points, next) = store
            .metrics_after(&cursor, settled_before, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        let Some(next) = next else { break };
        let rows: Vec<MetricRow> = points
            .iter()
            .map(|p| MetricRow {
                name: p.name.clone(),
                fleet_id: p.fleet_id.clone(),
                ts: p.ts,
                value: p.value,
            })
            .collect();
        analytics
            .write_metrics(&token("metrics", &points[0].id, &next), &rows)
            .await?;
        store
            .set_export_cursor("metrics", &next)
            .await
            .map_err(|e| e.to_string())?;
        shipped += rows.len();
    }
    loop {
        let cursor = store
            .export_cursor("recommendation_outcomes")
            .await
            .map_err(|e| e.to_string())?;
        let (outcomes, next) = store
            .outcomes_after(&cursor, settled_before, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        let Some(next) = next else { break };
        let rows: Vec<OutcomeRow> = outcomes
            .iter()
            .map(|o| OutcomeRow {
                fleet_id: o.fleet_id.clone(),
                recommendation_id: o.id.clone(),
                run_id: o.run_id.clone(),
                status: o.status.clone(),
                at: o.at,
            })
            .collect();
        analytics
            .write_outcomes(&token("outcomes", &outcomes[0].id, &next), &rows)
            .await?;
        store
            .set_export_cursor("recommendation_outcomes", &next)
            .await
            .map_err(|e| e.to_string())?;
        shipped += rows.len();
    }
    Ok(shipped)
}

/// Publishes the stored domain events recorded before `settled_before` to
/// `topic` (key = aggregate id, payload = the event as JSON, with its `seq`
/// so consumers can drop a repeat after a crash), after the stored cursor;
/// returns how many went out.
pub async fn publish_events(
    store: &Store,
    producer: &fleet_pipeline::kafka::FutureProducer,
    topic: &str,
    settled_before: i64,
) -> Result<usize, String> {
    let mut published = 0;
    loop {
        let (seq, _) = store
            .export_cursor("events")
            .await
            .map_err(|e| e.to_string())?;
        let events = store
            .events_to_publish(seq.max(0), settled_before, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = events.last() else { break };
        let messages: Vec<(String, Vec<u8>)> = events
            .iter()
            .map(|e| {
                let payload = serde_json::to_vec(e).map_err(|e| e.to_string())?;
                Ok((e.aggregate_id.clone(), payload))
            })
            .collect::<Result<_, String>>()?;
        fleet_pipeline::kafka::send_all(producer, topic, &messages).await?;
        store
            .set_export_cursor("events", &(last.seq, String::new()))
            .await
            .map_err(|e| e.to_string())?;
        published += messages.len();
    }
    Ok(published)
}

fn token(stream: &str, first_id: &str, last: &Cursor) -> String {
    format!("{stream}-{first_id}-{}", last.1)
}

/// Exports every [`EVERY`] until `stop`, then once more; with `events`
/// (`KAFKA_BROKERS` and the topic), also publishes the domain events to
/// `fleet.events`. Failures are logged and retried at the next tick (the
/// cursors only move after a write), the events with a new producer (an
/// idempotent one whose broker lost its state keeps failing).
pub async fn run(
    store: Store,
    analytics: AnalyticsStore,
    events: Option<(String, String)>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut producer = None;
    loop {
        let stopping = tokio::select! {
            _ = &mut stop => true,
            _ = tokio::time::sleep(EVERY) => false,
        };
        let settled = now_ms() - SETTLE_MS;
        if let Err(e) = export_once(&store, &analytics, settled).await {
            warn("analytics export failed; retrying", e);
        }
        if let Some((brokers, topic)) = &events {
            let published = match producer.take() {
                Some(p) => Ok(p),
                None => fleet_pipeline::kafka::sink_producer(brokers),
            };
            match published {
                Ok(p) => match publish_events(&store, &p, topic, settled).await {
                    Ok(_) => producer = Some(p),
                    Err(e) => warn("publishing fleet.events failed; retrying", e),
                },
                Err(e) => warn("publishing fleet.events failed; retrying", e),
            }
        }
        if stopping {
            return;
        }
    }
}

fn warn(what: &str, error: String) {
    fleet_api::telemetry::log(
        fleet_api::telemetry::Level::Warn,
        what,
        serde_json::json!({"error": error}),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_api::run::RunMode;
    use fleet_api::store::{new_id, MetricPoint, NewRun, Recommendation};
    use fleet_pipeline::parquet_sink::analytics_context;

    async fn store() -> Store {
        let file = std::env::temp_dir().join(format!("fleet-export-{}.db", new_id()));
        let store = Store::connect(&format!("sqlite://{}", file.display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// Three metric points and a run with two recommendations, one rejected.
    async fn fill(store: &Store, fleet: &str) {
        let points: Vec<MetricPoint> = [10.0, 20.0, 30.0]
            .iter()
            .map(|v| MetricPoint {
                name: "cost_reduction_pct".into(),
                value: *v,
                fleet_id: Some(fleet.into()),
                ts: 1_000,
                labels: Default::default(),
            })
            .collect();
        store.insert_metrics(&points).await.unwrap();
        let run = store
            .create_run(NewRun {
                fleet_id: fleet.into(),
                name: "export".into(),
                mode: RunMode::OneShot,
                spec: serde_json::json!({}),
            })
            .await
            .unwrap();
        let recs: Vec<Recommendation> = (0..2)
            .map(|k| Recommendation {
                id: new_id(),
                run_id: run.id.clone(),
                fleet_id: fleet.into(),
                from_zone: format!("a{k}"),
                to_zone: "b".into(),
                vehicles: 1,
                km: 1.0,
                cost: 1.0,
                benefit_per_vehicle: 2.0,
                explanation: String::new(),
                status: "proposed".into(),
                created_at: now_ms(),
            })
            .collect();
        store
            .save_outcome(&run.id, 1.0, &serde_json::json!({}), &recs)
            .await
            .unwrap();
        store
            .decide_recommendations(&run.id, &[recs[0].id.clone()], "rejected")
            .await
            .unwrap();
    }

    async fn count(ctx: &fleet_pipeline::datafusion::prelude::SessionContext, sql: &str) -> i64 {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let column = batches[0].column(0);
        column
            .as_any()
            .downcast_ref::<fleet_pipeline::datafusion::arrow::array::Int64Array>()
            .unwrap()
            .value(0)
    }

    #[tokio::test]
    async fn points_and_outcomes_reach_parquet_once_even_when_shipped_again() {
        let store = store().await;
        fill(&store, "f").await;
        let dir = std::env::temp_dir().join(format!("fleet-export-{}", new_id()));
        let analytics = AnalyticsStore::Parquet(dir.clone());
        // Nothing is settled yet: nothing goes.
        assert_eq!(
            export_once(&store, &analytics, now_ms() - SETTLE_MS)
                .await
                .unwrap(),
            0
        );
        let later = now_ms() + 1_000;
        assert_eq!(export_once(&store, &analytics, later).await.unwrap(), 4);
        assert_eq!(export_once(&store, &analytics, later).await.unwrap(), 0);
        // A crash before the cursors were stored: shipped again, counted once.
        store
            .set_export_cursor("metrics", &(i64::MIN, String::new()))
            .await
            .unwrap();
        store
            .set_export_cursor("recommendation_outcomes", &(i64::MIN, String::new()))
            .await
            .unwrap();
        assert_eq!(export_once(&store, &analytics, later).await.unwrap(), 4);
        let ctx = analytics_context(&dir).await.unwrap();
        assert_eq!(count(&ctx, "SELECT count(*) FROM metrics").await, 3);
        assert_eq!(
            count(
                &ctx,
                "SELECT count(*) FROM recommendation_outcomes WHERE status = 'rejected'"
            )
            .await,
            1
        );
        assert_eq!(
            count(&ctx, "SELECT count(*) FROM recommendation_outcomes").await,
            1
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Domain events reach the real broker in `seq` order, keyed by aggregate,
    /// each once while the cursor holds; a reset cursor publishes again with
    /// the same `seq` (what consumers deduplicate on).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn domain_events_are_published_in_order_on_kafka() {
        use rdkafka::consumer::{Consumer, StreamConsumer};
        use rdkafka::message::Message as _;
        let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
        let topic = format!("test.events.{}", new_id());
        fleet_pipeline::kafka::ensure_topics(&brokers, &[&topic], 1)
            .await
            .unwrap();
        let producer = fleet_pipeline::kafka::producer(&brokers).unwrap();
        let store = store().await;
        fill(&store, "k").await;
        let later = now_ms() + 1_000;
        // Nothing settled yet.
        assert_eq!(
            publish_events(&store, &producer, &topic, now_ms() - SETTLE_MS)
                .await
                .unwrap(),
            0
        );
        let stored = store.events_after(0, 1000).await.unwrap();
        // The run created, its two recommendations created, one rejected.
        assert_eq!(stored.len(), 4, "{stored:?}");
        let n = publish_events(&store, &producer, &topic, later)
            .await
            .unwrap();
        assert_eq!(n, stored.len());
        assert_eq!(
            publish_events(&store, &producer, &topic, later)
                .await
                .unwrap(),
            0
        );

        let consumer: StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", format!("test-{}", new_id()))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&[&topic]).unwrap();
        let mut got = Vec::new();
        while got.len() < stored.len() {
            let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
                .await
                .expect("events arrive")
                .unwrap();
            let doc: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            assert_eq!(
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                doc["aggregate_id"].as_str().map(str::to_owned)
            );
            got.push(doc);
        }
        let seqs: Vec<i64> = got.iter().map(|d| d["seq"].as_i64().unwrap()).collect();
        let want: Vec<i64> = stored.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, want);
        assert_eq!(got[0]["aggregate"], "run");
        assert_eq!(got[0]["kind"], "created");
        assert_eq!(got[0]["state"]["fleet_id"], "k");
    }

    #[tokio::test]
    async fn points_and_outcomes_reach_clickhouse_once_even_when_shipped_again() {
        let addr =
            std::env::var("CLICKHOUSE_ADDR").unwrap_or_else(|_| "http://127.0.0.1:8123".into());
        let db = format!("fleet_export_{}", std::process::id());
        let admin = fleet_pipeline::clickhouse_sink::client(&addr);
        for sql in [
            format!("DROP DATABASE IF EXISTS {db}"),
            format!("CREATE DATABASE {db}"),
        ] {
            admin.query(&sql).execute().await.unwrap();
        }
        let client = fleet_pipeline::clickhouse_sink::client(&addr).with_database(&db);
        fleet_pipeline::clickhouse_sink::apply_ddl(&client)
            .await
            .unwrap();
        let analytics = AnalyticsStore::ClickHouse(Box::new(client.clone()));
        let store = store().await;
        fill(&store, "g").await;
        let later = now_ms() + 1_000;
        assert_eq!(export_once(&store, &analytics, later).await.unwrap(), 4);
        store
            .set_export_cursor("metrics", &(i64::MIN, String::new()))
            .await
            .unwrap();
        assert_eq!(export_once(&store, &analytics, later).await.unwrap(), 3);
        let n = |sql: &'static str| {
            let client = client.clone();
            async move { client.query(sql).fetch_one::<u64>().await.unwrap() }
        };
        assert_eq!(n("SELECT count() FROM metrics").await, 3);
        assert_eq!(n("SELECT count() FROM recommendation_outcomes").await, 1);
        admin
            .query(&format!("DROP DATABASE IF EXISTS {db}"))
            .execute()
            .await
            .unwrap();
    }
}
