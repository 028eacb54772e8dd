//! A directed min-cost-flow network with integer supplies, capacities and costs.
//!
//! This is the interface between the rebalancing model (which *builds* networks)
//! and the solvers (which never know about zones). It is deliberately plain:
//! parallel vectors indexed by arc, so solvers can scan them in tight loops.

/// Capacity used for "unbounded" arcs. Large enough never to bind, small
/// enough that sums of a few of them cannot overflow an `i64`.
pub const UNBOUNDED: i64 = i64::MAX / 8;

/// A min-cost-flow instance: minimise `sum cost[a] * flow[a]` subject to
/// `0 <= flow[a] <= capacity[a]` and, for every node `v`,
/// `outflow(v) - inflow(v) == supply[v]`.
///
/// ```
/// use fleet_engine::network::Network;
/// let mut net = Network::with_nodes(2);
/// net.supply[0] = 3;
/// net.supply[1] = -3;
/// let arc = net.add_arc(0, 1, 5, 7);
/// assert_eq!(net.arc_count(), 1);
/// assert_eq!(net.cost[arc], 7);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Network {
    /// Net supply of every node (positive: produces flow, negative: consumes it).
    pub supply: Vec<i64>,
    /// Tail of every arc.
    pub source: Vec<u32>,
    /// Head of every arc.
    pub target: Vec<u32>,
    /// Upper bound of every arc (lower bounds are always zero).
    pub capacity: Vec<i64>,
    /// Cost per unit of flow of every arc.
    pub cost: Vec<i64>,
}

impl Network {
    /// An empty network with `nodes` nodes of zero supply and no arcs.
    pub fn with_nodes(nodes: usize) -> Self {
        Network {
            supply: vec![0; nodes],
            ..Default::default()
        }
    }

    /// Appends a node with the given supply and returns its index.
    pub fn add_node(&mut self, supply: i64) -> usize {
        self.supply.push(supply);
        self.supply.len() - 1
    }

    /// Appends an arc and returns its index.
    pub fn add_arc(&mut self, from: usize, to: usize, capacity: i64, cost: i64) -> usize {
        debug_assert!(from < self.supply.len() && to < self.supply.len());
        self.source.push(from as u32);
        self.target.push(to as u32);
        self.capacity.push(capacity);
        self.cost.push(cost);
        self.source.len() - 1
    }

    pub fn node_count(&self) -> usize {
        self.supply.len()
    }

    pub fn arc_count(&self) -> usize {
        self.source.len()
    }

    /// Total cost of a flow vector on this network (in `i128`, so it cannot overflow).
    pub fn flow_cost(&self, flow: &[i64]) -> i128 {
        flow.iter()
            .zip(&self.cost)
            .map(|(&f, &c)| f as i128 * c as i128)
            .sum()
    }

    /// Checks that `flow` respects capacities and conservation; returns the
    /// first violation found, described for a human.
    pub fn check_flow(&self, flow: &[i64]) -> Result<(), String> {
        if flow.len() != self.arc_count() {
            return Err(format!(
                "flow has {} entries for {} arcs",
                flow.len(),
                self.arc_count()
            ));
        }
        let mut balance = self.supply.clone();
        for a in 0..self.arc_count() {
            if flow[a] < 0 || flow[a] > self.capacity[a] {
                return Err(format!(
                    "arc {a} carries {} outside [0, {}]",
                    flow[a], self.capacity[a]
                ));
            }
            balance[self.source[a] as usize] -= flow[a];
            balance[self.target[a] as usize] += flow[a];
        }
        match balance.iter().position(|&b| b != 0) {
            Some(v) => Err(format!("node {v} is unbalanced by {}", balance[v])),
            None => Ok(()),
        }
    }
}
