//! Who is calling: credentials (`Authorization: Bearer <JWT>` or
//! `X-API-Key`) turned into a [`Caller`] with a role and a fleet scope.
//! What a caller may do is decided in [`crate::access`], not here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::store::Store;

/// What a caller may do, from least to most (DESIGN.md section 5).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Reads, creates and updates runs, rebalancing and recommendations.
    Operator,
    /// Everything, including deletes, API keys and the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The fleets a caller may see: all (`"*"`) or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fleets {
    All,
    Only(Vec<String>),
}

impl Fleets {
    pub fn allows(&self, fleet: &str) -> bool {
        match self {
            Fleets::All => true,
            Fleets::Only(list) => list.iter().any(|f| f == fleet),
        }
    }

    /// Whether every fleet of `other` is one of these.
    pub fn covers(&self, other: &Fleets) -> bool {
        match (self, other) {
            (Fleets::All, _) => true,
            (Fleets::Only(_), Fleets::All) => false,
            (Fleets::Only(_), Fleets::Only(list)) => list.iter().all(|f| self.allows(f)),
        }
    }

    /// The JSON form of the `fleets` claim: `"*"` or a list.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Fleets::All => serde_json::json!("*"),
            Fleets::Only(list) => serde_json::json!(list),
        }
    }

    /// Reads the `fleets` claim: `"*"`, or a non-empty list of non-empty ids.
    pub fn from_json(value: &serde_json::Value) -> Option<Fleets> {
        match value {
            serde_json::Value::String(s) if s == "*" => Some(Fleets::All),
            serde_json::Value::Array(items) if !items.is_empty() => items
                .iter()
                .map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(Fleets::Only),
            _ => None,
        }
    }
}

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Jwt,
    ApiKey,
}

impl Credential {
    pub fn as_str(self) -> &'static str {
        match self {
            Credential::Jwt => "jwt",
            Credential::ApiKey => "api_key",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// JWT `sub`, or `key:<id>` for an API key (never the key itself).
    pub subject: String,
    pub role: Role,
    pub fleets: Fleets,
    pub credential: Credential,
    /// The fleet the request's body or query named (see
    /// [`Caller::admit`]), for the audit log.
    pub(crate) named_fleet: Arc<Mutex<Option<String>>>,
}

impl Caller {
    pub fn new(subject: String, role: Role, fleets: Fleets, credential: Credential) -> Self {
        Caller {
            subject,
            role,
            fleets,
            credential,
            named_fleet: Arc::new(Mutex::new(None)),
        }
    }

    /// What rate limits are counted per: one credential.
    pub fn limit_key(&self) -> String {
        format!("{}:{}", self.credential.as_str(), self.subject)
    }
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// A missing part or a bad credential (answered 401).
    Invalid(String),
    /// The key store did not answer (answered 503; the caller may retry).
    Unavailable(String),
}

/// The JWT settings: HS256 with a shared secret or RS256 with a public key.
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

/// Tolerated clock difference for `exp` and `nbf`.
pub const JWT_LEEWAY_SECONDS: u64 = 30;

impl JwtVerifier {
    /// HS256 with `secret` (`JWT_SECRET`; at least 32 bytes, shorter secrets
    /// can be guessed offline from one token).
    pub fn hs256(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < 32 {
            return Err(
                "JWT_SECRET must be at least 32 bytes; generate one with `openssl rand -hex 32`"
                    .into(),
            );
        }
        Ok(Self::with(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// RS256 with the PEM public key in `pem` (`JWT_PUBLIC_KEY_FILE`).
    pub fn rs256(pem: &[u8]) -> Result<Self, String> {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| {
            format!("JWT_PUBLIC_KEY_FILE is not an RSA public key in PEM form ({e}); export it with `openssl pkey -pubout`")
        })?;
        Ok(Self::with(key, Algorithm::RS256))
    }

    fn with(key: DecodingKey, algorithm: Algorithm) -> Self {
        // Exactly one algorithm is accepted: a token naming another (`none`,
        // or HS256 signed with an RS256 public key) is refused before its
        // signature is looked at.
        let mut validation = Validation::new(algorithm);
        validation.leeway = JWT_LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        JwtVerifier { key, validation }
    }

    /// Also requires the `iss` claim to be `issuer` and the `aud` claim to
    /// name `audience` (`JWT_ISSUER`, `JWT_AUDIENCE`), when given: tokens an
    /// identity provider issued for other services are then refused.
    pub fn expecting(mut self, issuer: Option<&str>, audience: Option<&str>) -> Self {
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = issuer {
            self.validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = audience {
            self.validation.set_audience(&[audience]);
            self.validation.validate_aud = true;
            required.push("aud");
        }
        self.validation.set_required_spec_claims(&required);
        self
    }

    /// The caller a token names, if its signature, algorithm, `exp` and
    /// `nbf` check out and its claims are complete.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
                AuthError::Invalid(
                    match e.kind() {
                        ErrorKind::ExpiredSignature => "the token has expired; get a new one",
                        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                        ErrorKind::InvalidSignature => "the token's signature does not verify",
                        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                            "the token is signed with an algorithm this service does not accept"
                        }
                        ErrorKind::MissingRequiredClaim(_) => {
                            "the token lacks a required claim (sub, exp; iss, aud when configured)"
                        }
                        ErrorKind::InvalidIssuer => "the token's issuer (iss) is not accepted here",
                        ErrorKind::InvalidAudience => "the token is not for this service (aud)",
                        _ => "the bearer token is not a valid JWT",
                    }
                    .to_owned(),
                )
            })?;
        let claims = data.claims;
        let role = Role::parse(&claims.role).ok_or_else(|| {
            AuthError::Invalid("the token's `role` must be viewer, operator or admin".into())
        })?;
        let fleets = Fleets::from_json(&claims.fleets).ok_or_else(|| {
            AuthError::Invalid("the token's `fleets` must be \"*\" or a list of fleet ids".into())
        })?;
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid("the token's `sub` is empty".into()));
        }
        Ok(Caller::new(claims.sub, role, fleets, Credential::Jwt))
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    fleets: serde_json::Value,
}

/// What a valid API key grants (cached by key hash).
#[derive(Debug, Clone)]
pub struct KeyGrant {
    pub id: String,
    pub role: Role,
    pub fleets: Fleets,
}

/// How long a looked-up key is trusted without asking the database again:
/// a key revoked through another replica stops working within this time
/// (at once on the replica that revoked it).
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
const KEY_CACHE_MAX: usize = 10_000;

/// Turns request headers into a [`Caller`].
pub struct Authenticator {
    jwt: Option<JwtVerifier>,
    keys: Mutex<HashMap<String, (Instant, Option<KeyGrant>)>>,
}

impl Authenticator {
    /// API keys only, plus JWTs if `jwt` is given.
    pub fn new(jwt: Option<JwtVerifier>) -> Self {
        Authenticator {
            jwt,
            keys: Mutex::new(HashMap::new()),
        }
    }

    pub fn accepts_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    /// The caller the headers prove, `Ok(None)` if they carry no credential.
    pub async fn authenticate(
        &self,
        store: &Store,
        headers: &HeaderMap,
    ) -> Result<Option<Caller>, AuthError> {
        let bearer = headers.get(axum::http::header::AUTHORIZATION);
        let key = headers.get("x-api-key");
        match (bearer, key) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(AuthError::Invalid(
                "send either Authorization or X-API-Key, not both".into(),
            )),
            (Some(value), None) => {
                let token = value
                    .to_str()
                    .ok()
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        AuthError::Invalid("Authorization must be `Bearer <JWT>`".into())
                    })?;
                let jwt = self.jwt.as_ref().ok_or_else(|| {
                    AuthError::Invalid(
                        "this service accepts no JWTs (neither JWT_SECRET nor JWT_PUBLIC_KEY_FILE is set); use X-API-Key".into(),
                    )
                })?;
                jwt.verify(token).map(Some)
            }
            (None, Some(value)) => {
                let key = value
                    .to_str()
                    .ok()
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| AuthError::Invalid("X-API-Key is empty".into()))?;
                let grant = self
                    .key_grant(store, key)
                    .await?
                    .ok_or_else(|| AuthError::Invalid("unknown or revoked API key".into()))?;
                Ok(Some(Caller::new(
                    format!("key:{}", grant.id),
                    grant.role,
                    grant.fleets,
                    Credential::ApiKey,
                )))
            }
        }
    }

    async fn key_grant(&self, store: &Store, key: &str) -> Result<Option<KeyGrant>, AuthError> {
        let hash = crate::api_keys::hash_key(key);
        if let Some((at, grant)) = self.keys.lock().expect("key cache").get(&hash) {
            if at.elapsed() < KEY_CACHE_TTL {
                return Ok(grant.clone());
            }
        }
        let grant = store.key_grant(&hash).await.map_err(|e| {
            AuthError::Unavailable(format!("cannot check the API key now ({e}); retry"))
        })?;
        let mut cache = self.keys.lock().expect("key cache");
        if cache.len() >= KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(hash, (Instant::now(), grant.clone()));
        Ok(grant)
    }

    /// Forgets cached keys (after a revocation here).
    pub fn forget_keys(&self) {
        self.keys.lock().expect("key cache").clear();
    }
}
