//! # fleet-engine
//!
//! The pure heart of fleet-optimization: the rebalancing model, an exact
//! integral min-cost-flow solver written for it, warm-started re-solves,
//! Pareto fronts, multi-period planning and demand forecasts.
//!
//! Layers, bottom up: [`network`] (a plain min-cost-flow instance) ->
//! [`simplex`] (cold solves and warm re-solves) ->
//! [`model`] (zones, costs) -> [`formulation`] (problem -> network) ->
//! [`plan`] (network flow -> moves and objectives) -> [`optimize`] (entry
//! points). [`run_settings`] (a run's weights and limits) sits on [`problem_file`].
//! [`geo`] (with [`zone_raster`] on it), [`forecast`], [`dimacs`] and [`synthetic`] are leaves.
//!
//! Architecture invariant: this crate does no IO, spawns no threads and has
//! no async code. Everything here is a deterministic function of its inputs.

pub mod dimacs;
pub mod forecast;
pub mod formulation;
pub mod geo;
pub mod model;
pub mod network;
pub mod optimize;
pub mod plan;
pub mod problem_file;
pub mod run_settings;
pub mod simplex;
pub mod synthetic;
pub mod time;
pub mod zone_raster;
