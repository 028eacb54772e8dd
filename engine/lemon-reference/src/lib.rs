//! LEMON's network simplex as an independent reference for `fleet-engine`.
//!
//! The `mcmf` crate compiles LEMON 1.3 (C++) and exports a C entry point that
//! takes a supply-based network; its Rust wrapper only exposes a max-flow API,
//! so we call the C entry point directly. Used by tests and benchmarks only:
//! the service never links C++.
//!
//! The entry point instantiates `NetworkSimplex<SmartDigraph>` with LEMON's
//! default `int` (32-bit) flow and cost types, whatever its `int64_t`
//! signature suggests. So capacities at or above `i32::MAX` are passed as
//! `i32::MAX` (LEMON's "infinite"), and networks whose costs or supplies do
//! not fit 32 bits are refused rather than silently truncated.

use fleet_engine::network::Network;

// Keep the mcmf rlib (and with it LEMON's static library) linked.
use mcmf as _;

extern "C" {
    fn network_simplex_mcmf_i64(
        num_vertices: i64,
        num_edges: i64,
        node_supply: *const i64,
        edge_a: *const i64,
        edge_b: *const i64,
        edge_capacity: *const i64,
        edge_cost: *const i64,
        edge_flow_result: *mut i64,
    ) -> i64;
}

/// Arrays in the layout LEMON's entry point reads, prepared ahead of timing
/// so a benchmark measures LEMON's own work (graph build + solve) only.
pub struct LemonInput {
    supply: Vec<i64>,
    source: Vec<i64>,
    target: Vec<i64>,
    capacity: Vec<i64>,
    cost: Vec<i64>,
}

impl LemonInput {
    /// # Panics
    /// If a cost or supply does not fit LEMON's 32-bit `int`.
    pub fn new(net: &Network) -> Self {
        let fits = |v: &i64| i32::try_from(*v).is_ok();
        assert!(
            net.cost.iter().all(fits),
            "a cost does not fit LEMON's 32-bit int"
        );
        assert!(
            net.supply.iter().all(fits),
            "a supply does not fit LEMON's 32-bit int"
        );
        LemonInput {
            supply: net.supply.clone(),
            source: net.source.iter().map(|&v| v as i64).collect(),
            target: net.target.iter().map(|&v| v as i64).collect(),
            capacity: net
                .capacity
                .iter()
                .map(|&c| c.min(i32::MAX as i64))
                .collect(),
            cost: net.cost.clone(),
        }
    }

    /// Runs LEMON's network simplex (block search pivot, its default) and
    /// returns the optimal cost and the arc flows. The network must be
    /// feasible: LEMON's entry point does not report infeasibility.
    pub fn solve(&self) -> (i64, Vec<i64>) {
        let mut flow = vec![0i64; self.source.len()];
        // SAFETY: all slices have the lengths the entry point is told, node
        // indices are < num_vertices (they come from a valid `Network`), and
        // `flow` has room for one value per arc.
        let cost = unsafe {
            network_simplex_mcmf_i64(
                self.supply.len() as i64,
                self.source.len() as i64,
                self.supply.as_ptr(),
                self.source.as_ptr(),
                self.target.as_ptr(),
                self.capacity.as_ptr(),
                self.cost.as_ptr(),
                flow.as_mut_ptr(),
            )
        };
        (cost, flow)
    }
}

/// Convenience: optimal cost and flows of `net` according to LEMON.
pub fn solve(net: &Network) -> (i64, Vec<i64>) {
    LemonInput::new(net).solve()
}
