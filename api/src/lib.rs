//! # fleet-api
//!
//! The service's HTTP layer and persistence: the API ([`http`]) over the
//! store of runs, results, recommendations, rebalancing and metrics in
//! PostgreSQL or SQLite ([`store`]), behind access control ([`access`]:
//! authentication in [`auth`], API keys in [`api_keys`], the audit log in
//! [`audit`], rate limits in [`rate_limit`]) and optionally TLS ([`tls`]),
//! and the web dashboard at `/` ([`dashboard`]).
//!
//! Architecture invariant: the engine does the optimizing; this crate only
//! stores, serves and schedules.

pub mod access;
mod admin;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod dashboard;
pub mod events;
pub mod exports;
pub mod http;
pub mod rate_limit;
pub mod rebalancing;
pub mod run;
pub mod solve;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod windows;
