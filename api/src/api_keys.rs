//! API keys: generated here, stored only as SHA-256 hashes, created, listed
//! and revoked by admins (`/keys`), and the bootstrap admin key
//! (`ADMIN_API_KEY`, or one generated at the first embedded start).

use ring::rand::SecureRandom;
use sqlx::Row;

use crate::auth::{Fleets, KeyGrant, Role};
use crate::store::{new_id, now_ms, Store, StoreError};

/// What every generated key starts with (so leaked keys are recognisable
/// by secret scanners).
pub const KEY_PREFIX: &str = "fo_";
/// Id of the key `ADMIN_API_KEY` installs.
pub const BOOTSTRAP_KEY_ID: &str = "bootstrap-admin";

/// A new random key: `fo_` and 256 random bits in hex.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source failed");
    format!("{KEY_PREFIX}{}", hex(&bytes))
}

/// Lower-case hex (every authenticated request hashes its key: no
/// formatting machinery per byte).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// The stored form of a key: hex SHA-256. Keys are 256-bit random strings
/// (or an operator's `ADMIN_API_KEY`), so a slow password hash would add
/// nothing but latency to every request.
pub fn hash_key(key: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, key.as_bytes()).as_ref())
}

/// The schema of a key's `fleets`: `"*"` (all fleets) or a non-empty list
/// of fleet ids.
pub(crate) fn fleets_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["*"])),
        )
        .item(
            ArrayBuilder::new()
                .items(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1)),
                )
                .min_items(Some(1)),
        )
        .description(Some(
            "`\"*\"` (all fleets) or a non-empty list of fleet ids.",
        ))
        .into()
}

/// An API key as admins see it: never the secret, never its hash.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub role: Role,
    #[schema(schema_with = fleets_schema)]
    pub fleets: serde_json::Value,
    pub created_by: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

fn read_key(row: &sqlx::any::AnyRow) -> Result<ApiKey, StoreError> {
    let role: String = row.try_get("role")?;
    let fleets: String = row.try_get("fleets")?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
        fleets: serde_json::from_str(&fleets).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl Store {
    /// Stores a new key for `role` and `fleets`; returns it with the secret,
    /// which is not stored and cannot be shown again.
    pub async fn create_key(
        &self,
        name: &str,
        role: Role,
        fleets: &Fleets,
        created_by: &str,
    ) -> Result<(ApiKey, String), StoreError> {
        let secret = generate_key();
        let key = self
            .insert_key(&new_id(), name, &secret, role, fleets, created_by)
            .await?;
        Ok((key, secret))
    }

    async fn insert_key(
        &self,
        id: &str,
        name: &str,
        secret: &str,
        role: Role,
        fleets: &Fleets,
        created_by: &str,
    ) -> Result<ApiKey, StoreError> {
        let key = ApiKey {
            id: id.to_owned(),
            name: name.to_owned(),
            prefix: secret.chars().take(8).collect(),
            role,
            fleets: fleets.to_json(),
            created_by: created_by.to_owned(),
            created_at: now_ms(),
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, name, prefix, key_hash, role, fleets, created_by, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(hash_key(secret))
        .bind(role.as_str())
        .bind(key.fleets.to_string())
        .bind(&key.created_by)
        .bind(key.created_at)
        .execute(&self.pool)
        .await?;
        Ok(key)
    }

    /// Keys in creation order, revoked ones included.
    pub async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, prefix, role, fleets, created_by, created_at, revoked_at \
             FROM api_keys ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(read_key).collect()
    }

    pub async fn get_key(&self, id: &str) -> Result<ApiKey, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, prefix, role, fleets, created_by, created_at, revoked_at \
             FROM api_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        read_key(&row)
    }

    /// Revokes key `id` (revoking twice keeps the first time).
    pub async fn revoke_key(&self, id: &str) -> Result<ApiKey, StoreError> {
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.get_key(id).await
    }

    /// What the key with hash `key_hash` grants, if it exists and is not revoked.
    pub async fn key_grant(&self, key_hash: &str) -> Result<Option<KeyGrant>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT id, role, fleets FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let (role, fleets): (String, String) = (row.try_get("role")?, row.try_get("fleets")?);
        let corrupt = || StoreError::Corrupt(format!("api key role {role} / fleets {fleets}"));
        let fleets: serde_json::Value = serde_json::from_str(&fleets).map_err(|_| corrupt())?;
        Ok(Some(KeyGrant {
            id: row.try_get("id")?,
            role: Role::parse(&role).ok_or_else(corrupt)?,
            fleets: Fleets::from_json(&fleets).ok_or_else(corrupt)?,
        }))
    }

    /// Makes `secret` (`ADMIN_API_KEY`) the bootstrap admin key for all
    /// fleets, replacing an earlier bootstrap key.
    pub async fn install_bootstrap_key(&self, secret: &str) -> Result<(), StoreError> {
        // An upsert, so replicas starting together do not race.
        sqlx::query(
            "INSERT INTO api_keys (id, name, prefix, key_hash, role, fleets, created_by, created_at, revoked_at) \
             VALUES ($1, 'ADMIN_API_KEY', $2, $3, 'admin', '\"*\"', 'environment', $4, NULL) \
             ON CONFLICT (id) DO UPDATE SET prefix = excluded.prefix, key_hash = excluded.key_hash, \
                 role = 'admin', fleets = '\"*\"', revoked_at = NULL",
        )
        .bind(BOOTSTRAP_KEY_ID)
        .bind(secret.chars().take(8).collect::<String>())
        .bind(hash_key(secret))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether any key can administer (so the service is not locked out).
    pub async fn has_admin_key(&self) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = row.try_get("n")?;
        Ok(n > 0)
    }
}

/// How the service proves its first admin, decided at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// `ADMIN_API_KEY` is installed, or JWTs / existing admin keys suffice.
    Configured,
    /// Nothing was configured and no admin key existed: this new key was
    /// stored (as a hash) and must be shown to the operator once.
    Generated(String),
}

/// At start: installs `ADMIN_API_KEY` if given; otherwise, when no JWT
/// verifier is configured and no admin key exists, generates an admin key
/// if `embedded` (the one-command default), and refuses to start if not
/// (a server must not print a credential into its logs unasked).
pub async fn bootstrap(
    store: &Store,
    admin_key: Option<&str>,
    jwt_configured: bool,
    embedded: bool,
) -> Result<Bootstrap, String> {
    if let Some(key) = admin_key {
        if key.len() < 16 {
            return Err("ADMIN_API_KEY must be at least 16 characters; generate one with `openssl rand -hex 32`".into());
        }
        store
            .install_bootstrap_key(key)
            .await
            .map_err(|e| format!("cannot store ADMIN_API_KEY: {e}"))?;
        return Ok(Bootstrap::Configured);
    }
    let has_admin = store
        .has_admin_key()
        .await
        .map_err(|e| format!("cannot read API keys: {e}"))?;
    if jwt_configured || has_admin {
        return Ok(Bootstrap::Configured);
    }
    if !embedded {
        return Err("no credentials are configured: set ADMIN_API_KEY (then create keys with POST /keys), or JWT_SECRET / JWT_PUBLIC_KEY_FILE".into());
    }
    let (_, secret) = store
        .create_key(
            "generated at first start",
            Role::Admin,
            &Fleets::All,
            "service",
        )
        .await
        .map_err(|e| format!("cannot store the generated admin key: {e}"))?;
    Ok(Bootstrap::Generated(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_distinct_and_hash_to_hex_sha256() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 64);
        // The SHA-256 test vector of "abc".
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
