//! # fleet-api
//!
//! The service's HTTP layer and persistence (issue 3, in progress). So far:
//! the run lifecycle ([`run`]) and the store of runs, results and
//! recommendations in PostgreSQL or SQLite ([`store`]).
//!
//! Architecture invariant: the engine does the optimizing; this crate only
//! stores, serves and schedules.

pub mod cache;
pub mod http;
pub mod rebalancing;
pub mod run;
pub mod solve;
pub mod store;
pub mod telemetry;
pub mod windows;
