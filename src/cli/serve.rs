//! `fleet-optimization serve` and `migrate`: the HTTP service with the
//! streaming pipeline, and the database schema. Configuration comes from the
//! environment (DESIGN.md section 7); with nothing set, everything is
//! embedded: a SQLite file under `DATA_DIR` (default `./data`), an
//! in-process cache and an in-process replay of the bundled NYC trips.
//! `DATABASE_URL`, `REDIS_ADDR` and `KAFKA_BROKERS` switch to PostgreSQL,
//! Redis and Kafka.

use std::path::PathBuf;

use clap::Args;
use fleet_api::access::Security;
use fleet_api::api_keys::{bootstrap, Bootstrap};
use fleet_api::auth::JwtVerifier;
use fleet_api::cache::Cache;
use fleet_api::http::{serve, shutdown_signal, AppState};
use fleet_api::rate_limit::{RateLimiter, DEFAULT_BURST, DEFAULT_PER_SECOND};
use fleet_api::store::Store;

use super::Failure;

/// Run the service (API) with embedded defaults where nothing is configured.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on (overrides PORT; default 8080).
    #[arg(long)]
    pub port: Option<u16>,
    /// Runs solved at once; more wait in line (default: the number of CPUs).
    #[arg(long)]
    pub workers: Option<usize>,
    /// The streaming pipeline: `on` (default; Kafka when KAFKA_BROKERS is
    /// set, else the NYC replay) or `off` (API only).
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub pipeline: String,
}

/// Apply the database migrations and exit.
#[derive(Debug, Args)]
pub struct MigrateArgs {}

/// `DATABASE_URL`, or the embedded SQLite file under `DATA_DIR`.
fn database_url() -> Result<String, Failure> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return Ok(url);
    }
    let dir = PathBuf::from(std::env::var("DATA_DIR").unwrap_or_else(|_| "data".into()));
    std::fs::create_dir_all(&dir).map_err(|e| {
        Failure::Other(format!(
            "cannot create DATA_DIR {}: {e}; set DATA_DIR to a writable folder",
            dir.display()
        ))
    })?;
    Ok(format!(
        "sqlite://{}",
        dir.join("fleet-optimization.db").display()
    ))
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Runtime::new()
        .map_err(|e| Failure::Other(format!("cannot start the async runtime: {e}")))
}

async fn open_store(migrate: bool) -> Result<Store, Failure> {
    let url = database_url()?;
    // Never print the URL itself: it may carry a password.
    let store = Store::connect(&url)
        .await
        .map_err(|e| Failure::Other(format!("cannot open the database: {e}")))?;
    if migrate {
        store
            .migrate()
            .await
            .map_err(|e| Failure::Other(e.to_string()))?;
    }
    Ok(store)
}

/// A set, non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `JWT_SECRET` (HS256) or `JWT_PUBLIC_KEY_FILE` (RS256), at most one, with
/// the optional `JWT_ISSUER` and `JWT_AUDIENCE` every token must carry.
fn jwt_from_env() -> Result<Option<JwtVerifier>, Failure> {
    let (issuer, audience) = (env("JWT_ISSUER"), env("JWT_AUDIENCE"));
    let verifier = match (env("JWT_SECRET"), env("JWT_PUBLIC_KEY_FILE")) {
        (Some(_), Some(_)) => Err(Failure::Usage(
            "set JWT_SECRET (HS256) or JWT_PUBLIC_KEY_FILE (RS256), not both".into(),
        )),
        (Some(secret), None) => JwtVerifier::hs256(secret.as_bytes())
            .map(Some)
            .map_err(Failure::Usage),
        (None, Some(file)) => {
            let pem = std::fs::read(&file).map_err(|e| {
                Failure::Usage(format!("cannot read JWT_PUBLIC_KEY_FILE {file}: {e}"))
            })?;
            JwtVerifier::rs256(&pem).map(Some).map_err(Failure::Usage)
        }
        (None, None) => Ok(None),
    }?;
    Ok(verifier.map(|v| v.expecting(issuer.as_deref(), audience.as_deref())))
}

/// `RATE_LIMIT_PER_SECOND` and `RATE_LIMIT_BURST` per credential.
fn rate_limiter_from_env() -> Result<RateLimiter, Failure> {
    let number = |name: &str, default: f64| match env(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n > 0.0)
            .ok_or_else(|| Failure::Usage(format!("{name}={v:?} must be a positive number"))),
    };
    let per_second = number("RATE_LIMIT_PER_SECOND", DEFAULT_PER_SECOND)?;
    let burst = number("RATE_LIMIT_BURST", DEFAULT_BURST.max(per_second))?;
    Ok(RateLimiter::new(per_second, burst))
}

/// `TLS_CERT_FILE` and `TLS_KEY_FILE`: both or neither.
fn tls_from_env() -> Result<Option<std::sync::Arc<fleet_api::tls::ServerConfig>>, Failure> {
    match (env("TLS_CERT_FILE"), env("TLS_KEY_FILE")) {
        (Some(cert), Some(key)) => fleet_api::tls::server_config(cert.as_ref(), key.as_ref())
            .map(Some)
            .map_err(Failure::Usage),
        (None, None) => Ok(None),
        _ => Err(Failure::Usage(
            "set both TLS_CERT_FILE and TLS_KEY_FILE (or neither, for plain HTTP)".into(),
        )),
    }
}

/// Rebuild runs, recommendations and rebalancing operations from the
/// stored events alone and compare them with the tables; prints a JSON
/// report, exit code 1 if they differ.
#[derive(Debug, Args)]
pub struct ReplayEventsArgs {}

pub fn run_replay_events(_: &ReplayEventsArgs) -> Result<(), Failure> {
    runtime()?.block_on(async {
        let store = open_store(true).await?;
        let report = store
            .replay_events()
            .await
            .map_err(|e| Failure::Other(e.to_string()))?;
        let mut doc = serde_json::to_value(&report).map_err(|e| Failure::Other(e.to_string()))?;
        doc["matches"] = serde_json::json!(report.matches());
        super::print_json(&doc)?;
        if report.matches() {
            Ok(())
        } else {
            Err(Failure::Other(format!(
                "{} rows differ from their events; the first: {:?}",
                report.mismatches.len(),
                report.mismatches[0]
            )))
        }
    })
}

pub fn run_migrate(_: &MigrateArgs) -> Result<(), Failure> {
    runtime()?.block_on(async {
        open_store(true).await?;
        eprintln!("migrations applied");
        Ok(())
    })
}

pub fn run_serve(args: &ServeArgs) -> Result<(), Failure> {
    let port = match args.port {
        Some(p) => p,
        None => match std::env::var("PORT") {
            Ok(p) => p
                .parse()
                .map_err(|_| Failure::Usage(format!("PORT={p:?} is not a port number")))?,
            Err(_) => 8080,
        },
    };
    let auto_migrate = std::env::var("AUTO_MIGRATE").map_or(true, |v| v != "false");
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let jwt = jwt_from_env()?;
    let limiter = rate_limiter_from_env()?;
    let tls = tls_from_env()?;
    runtime()?.block_on(async {
        let store = open_store(auto_migrate).await?;
        let embedded = env("DATABASE_URL").is_none();
        let admin_key = env("ADMIN_API_KEY");
        match bootstrap(&store, admin_key.as_deref(), jwt.is_some(), embedded)
            .await
            .map_err(Failure::Usage)?
        {
            Bootstrap::Configured => {}
            // Shown once, on stdout, never in the (JSON, stderr) log.
            Bootstrap::Generated(key) => println!(
                "No credentials were configured, so an admin API key was created.\n\
                 It is stored only as a hash and is shown this once; send it as `X-API-Key`:\n\
                 {key}"
            ),
        }
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
            .await
            .map_err(|e| {
                Failure::Other(format!(
                    "cannot listen on port {port}: {e}; set PORT to a free port"
                ))
            })?;
        fleet_api::telemetry::log(
            fleet_api::telemetry::Level::Info,
            "listening",
            serde_json::json!({"port": port, "tls": tls.is_some(), "database": format!("{:?}", store.backend()), "workers": workers}),
        );
        let cache = match std::env::var("REDIS_ADDR") {
            Ok(addr) if !addr.is_empty() => Cache::redis(&addr).await.map_err(Failure::Other)?,
            _ => Cache::memory(),
        };
        // Every run write (API or pipeline) makes cached run lists stale.
        let store = store.with_cache(cache.clone());
        let stream = if args.pipeline == "on" {
            Some(crate::stream::StreamConfig::from_env().map_err(Failure::Usage)?)
        } else {
            None
        };
        let mut state = AppState::new(store.clone(), workers)
            .with_cache(cache.clone())
            .with_streaming(stream.is_some())
            .with_security(Security::new(jwt, limiter));
        if let Some(crate::stream::Telemetry::Kafka { brokers, .. }) =
            stream.as_ref().map(|s| &s.telemetry)
        {
            let brokers = brokers.clone();
            state = state.with_check(
                "kafka",
                std::sync::Arc::new(move || {
                    let brokers = brokers.clone();
                    Box::pin(async move {
                        let up = fleet_pipeline::kafka::reachable(&brokers, std::time::Duration::from_secs(2)).await;
                        if up { "ok" } else { "down" }
                    })
                }),
            );
        }
        // The pipeline: "retrying" while a write, its source or its start
        // fails (the log says which and why).
        let health = crate::stream::logged_health();
        if stream.is_some() {
            let health = health.clone();
            state = state.with_check(
                "pipeline",
                std::sync::Arc::new(move || {
                    let ok = health.is_ok();
                    Box::pin(async move { if ok { "ok" } else { "retrying" } })
                }),
            );
        }
        if let Some(addr) = stream.as_ref().and_then(|s| s.clickhouse.clone()) {
            let client = fleet_pipeline::clickhouse_sink::client(&addr);
            state = state.with_check(
                "clickhouse",
                std::sync::Arc::new(move || {
                    let client = client.clone();
                    Box::pin(async move {
                        let ping = client.query("SELECT 1").execute();
                        match tokio::time::timeout(std::time::Duration::from_secs(2), ping).await {
                            Ok(Ok(())) => "ok",
                            _ => "down",
                        }
                    })
                }),
            );
        }
        // One shutdown signal for both: the HTTP server drains its requests,
        // the pipeline finishes its batch and commits.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            fleet_api::telemetry::log(
                fleet_api::telemetry::Level::Info,
                "shutting down: answering requests in flight, finishing the pipeline's batch and committing",
                serde_json::json!({}),
            );
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        // Metric points and recommendation outcomes go to the analytics store
        // (ClickHouse, else Parquet under DATA_DIR) whether or not the pipeline runs.
        let analytics = match env("CLICKHOUSE_ADDR") {
            Some(addr) => {
                let client = fleet_pipeline::clickhouse_sink::client(&addr);
                fleet_pipeline::clickhouse_sink::apply_ddl(&client)
                    .await
                    .map_err(Failure::Other)?;
                fleet_pipeline::analytics::AnalyticsStore::ClickHouse(Box::new(client))
            }
            None => fleet_pipeline::analytics::AnalyticsStore::Parquet(
                PathBuf::from(env("DATA_DIR").unwrap_or_else(|| "data".into())).join("analytics"),
            ),
        };
        // With Kafka, every domain event is also published on `fleet.events`.
        let events = match env("KAFKA_BROKERS") {
            Some(brokers) => {
                let topic = crate::stream::topics_from_env().events;
                fleet_pipeline::kafka::ensure_topics(&brokers, &[&topic], 4)
                    .await
                    .map_err(Failure::Other)?;
                Some((brokers, topic))
            }
            None => None,
        };
        let exporter = tokio::spawn(crate::export::run(
            store.clone(),
            analytics,
            events,
            stopped(stop_rx.clone()),
        ));
        let pipeline = stream.map(|config| {
            tokio::spawn(crate::stream::supervise(
                config,
                store,
                cache,
                health,
                stop_rx.clone(),
            ))
        });
        serve(listener, state, tls, stopped(stop_rx))
            .await
            .map_err(|e| Failure::Other(format!("server failed: {e}")))?;
        if let Some(task) = pipeline {
            let _ = task.await;
        }
        let _ = exporter.await;
        Ok(())
    })
}
