//! # fleet-engine
//!
//! The pure heart of fleet-optimization: the rebalancing model, an exact
//! integral min-cost-flow solver written for it, warm-started re-solves,
//! Pareto fronts, multi-period planning and demand forecasts.
//!
//! Architecture invariant: this crate does no IO, spawns no threads and has
//! no async code. Everything here is a deterministic function of its inputs.

pub mod network;
pub mod dimacs;
pub mod forecast;
pub mod geo;
