//! Warm-started re-optimisation of a solved min-cost flow.
//!
//! After a streaming window only a few zones change their idle or target
//! counts, i.e. a few node supplies and arc capacities. Re-running the simplex
//! from scratch would redo work whose result is mostly unchanged. Instead we
//! keep the previous optimal flow and its dual prices (potentials), repair the
//! few places where the change broke feasibility or complementary slackness,
//! and route the resulting excesses to deficits along shortest paths in the
//! residual network (successive shortest paths, Dijkstra on reduced costs).
//! Every step preserves "reduced costs are non-negative on residual arcs", so
//! the result is optimal — the same optimum a cold solve finds — and the
//! searches stop as soon as they reach a deficit, so they stay local.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::network::Network;

const NONE: u32 = u32::MAX;

/// Returned when the changed problem has no feasible flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Infeasible;

/// Work done by one [`IncrementalFlow::reoptimize`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairStats {
    /// Shortest-path searches (each ends in one augmentation).
    pub augmentations: u64,
    /// Nodes settled over all searches.
    pub settled: u64,
}

/// An optimal flow that can be updated and re-optimised in place.
///
/// ```
/// use fleet_engine::network::Network;
/// use fleet_engine::incremental::IncrementalFlow;
/// use fleet_engine::simplex::solve;
/// let mut net = Network::with_nodes(3);
/// net.supply = vec![2, 0, -2];
/// net.add_arc(0, 2, 10, 5);
/// net.add_arc(0, 1, 10, 1);
/// net.add_arc(1, 2, 1, 1);
/// let sol = solve(&net);
/// let mut warm = IncrementalFlow::new(net, sol.flow, sol.potential);
/// warm.set_supply(0, 3);
/// warm.set_supply(2, -3);
/// warm.reoptimize().unwrap();
/// assert_eq!(warm.cost(), 2 + 5 + 5);
/// ```
#[derive(Debug, Clone)]
pub struct IncrementalFlow {
    net: Network,
    flow: Vec<i64>,
    potential: Vec<i64>,
    /// Supply not yet routed (positive) or demand not yet met (negative).
    excess: Vec<i64>,
    // Adjacency in compressed form: arcs leaving / entering each node.
    out_start: Vec<u32>,
    out_arcs: Vec<u32>,
    in_start: Vec<u32>,
    in_arcs: Vec<u32>,
    // Search scratch, reused across searches; `dist` is valid where
    // `stamp == epoch`, so nothing is cleared between searches.
    dist: Vec<i64>,
    via: Vec<u32>,
    stamp: Vec<u32>,
    epoch: u32,
}

fn compress(n: usize, ends: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let mut start = vec![0u32; n + 1];
    for &v in ends {
        start[v as usize + 1] += 1;
    }
    for v in 0..n {
        start[v + 1] += start[v];
    }
    let mut fill = start.clone();
    let mut arcs = vec![0u32; ends.len()];
    for (a, &v) in ends.iter().enumerate() {
        arcs[fill[v as usize] as usize] = a as u32;
        fill[v as usize] += 1;
    }
    (start, arcs)
}

impl IncrementalFlow {
    /// Wraps an optimal `flow` of `net` with optimal `potential`s (as returned
    /// by [`crate::simplex::solve`]).
    pub fn new(net: Network, flow: Vec<i64>, potential: Vec<i64>) -> Self {
        let n = net.node_count();
        let (out_start, out_arcs) = compress(n, &net.source);
        let (in_start, in_arcs) = compress(n, &net.target);
        IncrementalFlow {
            excess: vec![0; n],
            dist: vec![0; n],
            via: vec![NONE; n],
            stamp: vec![0; n],
            epoch: 0,
            net,
            flow,
            potential,
            out_start,
            out_arcs,
            in_start,
            in_arcs,
        }
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    pub fn flow(&self) -> &[i64] {
        &self.flow
    }

    pub fn potential(&self) -> &[i64] {
        &self.potential
    }

    /// Cost of the current flow.
    pub fn cost(&self) -> i128 {
        self.net.flow_cost(&self.flow)
    }

    /// Changes a node's supply; takes effect at the next [`Self::reoptimize`].
    pub fn set_supply(&mut self, node: usize, supply: i64) {
        self.excess[node] += supply - self.net.supply[node];
        self.net.supply[node] = supply;
    }

    /// Changes an arc's capacity; takes effect at the next [`Self::reoptimize`].
    pub fn set_capacity(&mut self, arc: usize, capacity: i64) {
        self.net.capacity[arc] = capacity;
        let (s, t) = (self.net.source[arc] as usize, self.net.target[arc] as usize);
        let reduced = self.net.cost[arc] + self.potential[s] - self.potential[t];
        // Restore complementary slackness on this arc: flow within the new
        // bound, and an arc that pays to use (negative reduced cost) full.
        let wanted = if self.flow[arc] > capacity || reduced < 0 {
            capacity
        } else {
            self.flow[arc]
        };
        let change = wanted - self.flow[arc];
        self.flow[arc] = wanted;
        self.excess[s] -= change;
        self.excess[t] += change;
    }

    /// Routes all pending excess to deficits at minimum cost.
    pub fn reoptimize(&mut self) -> Result<RepairStats, Infeasible> {
        let mut stats = RepairStats::default();
        let mut sources: Vec<usize> = (0..self.excess.len()).filter(|&v| self.excess[v] > 0).collect();
        let mut sinks: Vec<usize> = (0..self.excess.len()).filter(|&v| self.excess[v] < 0).collect();
        loop {
            sources.retain(|&v| self.excess[v] > 0);
            sinks.retain(|&v| self.excess[v] < 0);
            let (Some(&s), Some(&t)) = (sources.last(), sinks.last()) else {
                break;
            };
            // Search from whichever end has fewer arcs: hubs such as the
            // fleet-wide sink touch every zone, their neighbours do not.
            let forward = self.degree(s) <= self.degree(t);
            let found = self.shortest_path(if forward { s } else { t }, forward, &mut stats);
            let end = found.ok_or(Infeasible)?;
            let (from, to) = if forward { (s, end) } else { (end, t) };
            self.augment(from, to, forward);
            stats.augmentations += 1;
        }
        if sources.is_empty() != sinks.is_empty() {
            return Err(Infeasible);
        }
        Ok(stats)
    }

    /// A goal node adjacent to `u` whose tentative distance is `d` (the
    /// distance now being settled), found by re-scanning `u`'s residual arcs.
    fn goal_at(&self, u: usize, d: i64, forward: bool, epoch: u32) -> Option<usize> {
        let is_goal = |v: usize| {
            self.stamp[v] == epoch && self.dist[v] == d && (if forward { self.excess[v] < 0 } else { self.excess[v] > 0 })
        };
        let lists = [(&self.out_start, &self.out_arcs), (&self.in_start, &self.in_arcs)];
        for (start, arcs) in lists {
            for &a in &arcs[start[u] as usize..start[u + 1] as usize] {
                let a = a as usize;
                let other = if self.net.source[a] as usize == u { self.net.target[a] } else { self.net.source[a] } as usize;
                if is_goal(other) && self.via[other] as usize == a {
                    return Some(other);
                }
            }
        }
        None
    }

    fn degree(&self, v: usize) -> u32 {
        self.out_start[v + 1] - self.out_start[v] + self.in_start[v + 1] - self.in_start[v]
    }

    /// Dijkstra on reduced costs from `origin` over residual arcs (forward) or
    /// reversed residual arcs (backward) until it settles a node with
    /// opposite excess. Updates potentials of settled nodes so reduced costs
    /// stay non-negative and the found path has zero reduced cost.
    fn shortest_path(&mut self, origin: usize, forward: bool, stats: &mut RepairStats) -> Option<usize> {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.stamp.fill(0);
            self.epoch = 1;
        }
        let epoch = self.epoch;
        let mut heap = BinaryHeap::new();
        let mut settled: Vec<u32> = Vec::new();
        self.dist[origin] = 0;
        self.stamp[origin] = epoch;
        self.via[origin] = NONE;
        heap.push(Reverse((0i64, origin as u32)));
        let mut found = None;
        while let Some(Reverse((d, u))) = heap.pop() {
            let u = u as usize;
            if d > self.dist[u] || settled.last() == Some(&(u as u32)) {
                continue;
            }
            settled.push(u as u32);
            let goal = if forward { self.excess[u] < 0 } else { self.excess[u] > 0 };
            if goal {
                found = Some((u, d));
                break;
            }
            // Residual arcs leaving u (forward search) or entering u (backward):
            // an arc a with room leaves its source; an arc with flow can be
            // undone, i.e. "leaves" its target.
            let (room_list, undo_list) = if forward {
                ((&self.out_start, &self.out_arcs), (&self.in_start, &self.in_arcs))
            } else {
                ((&self.in_start, &self.in_arcs), (&self.out_start, &self.out_arcs))
            };
            let pu = self.potential[u];
            for &a in &room_list.1[room_list.0[u] as usize..room_list.0[u + 1] as usize] {
                let a = a as usize;
                if self.flow[a] >= self.net.capacity[a] {
                    continue;
                }
                let (v, rc) = if forward {
                    let v = self.net.target[a] as usize;
                    (v, self.net.cost[a] + pu - self.potential[v])
                } else {
                    let v = self.net.source[a] as usize;
                    (v, self.net.cost[a] + self.potential[v] - pu)
                };
                relax(&mut self.dist, &mut self.stamp, &mut self.via, &mut heap, epoch, v, d + rc, a);
            }
            for &a in &undo_list.1[undo_list.0[u] as usize..undo_list.0[u + 1] as usize] {
                let a = a as usize;
                if self.flow[a] <= 0 {
                    continue;
                }
                let (v, rc) = if forward {
                    let v = self.net.source[a] as usize;
                    (v, -(self.net.cost[a] + self.potential[v] - pu))
                } else {
                    let v = self.net.target[a] as usize;
                    (v, -(self.net.cost[a] + pu - self.potential[v]))
                };
                relax(&mut self.dist, &mut self.stamp, &mut self.via, &mut heap, epoch, v, d + rc, a);
            }
            // Optimal duals are highly degenerate: whole regions sit at
            // reduced distance zero. A goal reached at the distance being
            // settled cannot get closer, so stop there instead of settling
            // every other node at that distance first.
            if let Some(v) = self.goal_at(u, d, forward, epoch) {
                settled.push(v as u32);
                found = Some((v, d));
                break;
            }
        }
        stats.settled += settled.len() as u64;
        let (end, reach) = found?;
        for &v in &settled {
            let v = v as usize;
            let shift = reach - self.dist[v];
            if forward {
                self.potential[v] -= shift;
            } else {
                self.potential[v] += shift;
            }
        }
        Some(end)
    }

    /// Pushes as much as possible along the path recorded by the last search.
    fn augment(&mut self, from: usize, to: usize, forward: bool) {
        // Walk the recorded path from the search's end back to its origin.
        let (walk_start, walk_end) = if forward { (to, from) } else { (from, to) };
        let mut amount = self.excess[from].min(-self.excess[to]);
        let mut v = walk_start;
        while v != walk_end {
            let a = self.via[v] as usize;
            let (other, pushes_forward) = self.step(a, v, forward);
            let room = if pushes_forward {
                self.net.capacity[a] - self.flow[a]
            } else {
                self.flow[a]
            };
            amount = amount.min(room);
            v = other;
        }
        let mut v = walk_start;
        while v != walk_end {
            let a = self.via[v] as usize;
            let (other, pushes_forward) = self.step(a, v, forward);
            self.flow[a] += if pushes_forward { amount } else { -amount };
            v = other;
        }
        self.excess[from] -= amount;
        self.excess[to] += amount;
    }

    /// For the arc `a` by which the search reached `v`: the node it came from,
    /// and whether flow goes along `a` (true) or is taken off it (false).
    fn step(&self, a: usize, v: usize, forward: bool) -> (usize, bool) {
        let (s, t) = (self.net.source[a] as usize, self.net.target[a] as usize);
        if forward {
            // Reached v from the other end; along the arc if v is its head.
            if t == v { (s, true) } else { (t, false) }
        } else {
            // Backward search reached v, which precedes the other end in flow order.
            if s == v { (t, true) } else { (s, false) }
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline]
fn relax(
    dist: &mut [i64],
    stamp: &mut [u32],
    via: &mut [u32],
    heap: &mut BinaryHeap<Reverse<(i64, u32)>>,
    epoch: u32,
    v: usize,
    d: i64,
    arc: usize,
) {
    if stamp[v] != epoch || d < dist[v] {
        stamp[v] = epoch;
        dist[v] = d;
        via[v] = arc as u32;
        heap.push(Reverse((d, v as u32)));
    }
}
