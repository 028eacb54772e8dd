//! `fleet-optimization serve` and `migrate`: the HTTP service and its
//! database schema. Configuration comes from the environment (DESIGN.md
//! section 7); with nothing set, everything is embedded: a SQLite file under
//! `DATA_DIR` (default `./data`) and an in-process cache. `DATABASE_URL`
//! and `REDIS_ADDR` switch to PostgreSQL and Redis.

use std::path::PathBuf;

use clap::Args;
use fleet_api::cache::Cache;
use fleet_api::http::{serve, AppState};
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
    runtime()?.block_on(async {
        let store = open_store(auto_migrate).await?;
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
            serde_json::json!({"port": port, "database": format!("{:?}", store.backend()), "workers": workers}),
        );
        let cache = match std::env::var("REDIS_ADDR") {
            Ok(addr) if !addr.is_empty() => Cache::redis(&addr).await.map_err(Failure::Other)?,
            _ => Cache::memory(),
        };
        serve(listener, AppState::new(store, workers).with_cache(cache))
            .await
            .map_err(|e| Failure::Other(format!("server failed: {e}")))
    })
}
