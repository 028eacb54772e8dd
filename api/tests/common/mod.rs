//! What the API test files share: one store per real database.

use fleet_api::store::{new_id, Store};

/// The PostgreSQL server the tests use (`TEST_DATABASE_URL`, default the
/// local `test` database).
pub fn postgres_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A migrated store on a fresh SQLite file and one on PostgreSQL: every test
/// runs its body on both.
pub async fn stores() -> Vec<Store> {
    let file = std::env::temp_dir().join(format!("fleet-test-{}.db", new_id()));
    let mut stores = Vec::new();
    for url in [format!("sqlite://{}", file.display()), postgres_url()] {
        let store = Store::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        store.migrate().await.unwrap();
        // Migrating twice is harmless (the service migrates at every start).
        store.migrate().await.unwrap();
        assert!(store.ping().await);
        stores.push(store);
    }
    stores
}

/// The admin key the tests install ([`Store::install_bootstrap_key`], as
/// `ADMIN_API_KEY` does in the service).
#[allow(dead_code)] // not every test file calls the API
pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef";

/// Installs [`ADMIN_KEY`] in `store`.
#[allow(dead_code)]
pub async fn install_admin_key(store: &Store) {
    store.install_bootstrap_key(ADMIN_KEY).await.unwrap();
}

/// An HTTP client that sends [`ADMIN_KEY`] with every request.
#[allow(dead_code)]
pub fn admin_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", ADMIN_KEY.parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Starts the service for `state` on 127.0.0.1:<random>, with [`ADMIN_KEY`]
/// installed; returns its base URL.
#[allow(dead_code)]
pub async fn spawn(state: fleet_api::http::AppState) -> String {
    install_admin_key(&state.store).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = fleet_api::http::router(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}
