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
