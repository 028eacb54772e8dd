//! Primal network simplex for integral min-cost flow.
//!
//! Why network simplex (and not cost scaling): rebalancing networks are small
//! to medium (10^3..10^5 nodes), have tiny supplies relative to arc counts and
//! come with an obvious feasible basis — the "do nothing" plan in which every
//! vehicle stays where it is. Network simplex can start from that basis, so it
//! never pays for an artificial phase, and its optimal spanning tree is a
//! basis that stays dual feasible when supplies and capacities change, which
//! is exactly what the warm start ([`NetworkSimplex::reoptimize`], dual
//! simplex) continues from. Cost scaling has no basis to continue from.
//!
//! The implementation keeps the basis tree as parent / child-list / depth
//! arrays (no recursion; the moved subtree is walked without a stack), prices
//! arcs with block search over an interleaved arc order, and chooses the
//! leaving arc with Cunningham's rule so the tree stays strongly feasible and
//! degenerate pivots cannot cycle.

use std::collections::BinaryHeap;

use crate::network::{Network, UNBOUNDED};

const NONE: u32 = u32::MAX;
/// Arc state: at lower bound (flow 0), in the tree, or at upper bound. The
/// value doubles as the sign that turns a reduced cost into "how much an
/// entering arc improves", so pricing needs no branch.
const LOWER: i8 = 1;
const TREE: i8 = 0;
const UPPER: i8 = -1;
/// Direction of a node's tree arc: towards its parent (`UP`) or away (`DOWN`).
const UP: i8 = 1;
const DOWN: i8 = -1;

/// Outcome of a solve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowStatus {
    /// An optimal flow was found.
    Optimal,
    /// No flow satisfies the supplies and capacities.
    Infeasible,
    /// A negative-cost cycle of unbounded capacity exists.
    Unbounded,
}

/// Result of a min-cost-flow solve: flows, an optimal dual (node potentials
/// `pi` with `cost[a] + pi[source] - pi[target] >= 0` on every arc that can
/// still carry more flow and `<= 0` on every arc that carries flow), and
/// statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSolution {
    pub status: FlowStatus,
    /// Flow on every arc of the network, in the network's arc order.
    pub flow: Vec<i64>,
    /// Node potentials (dual prices) of an optimal basis.
    pub potential: Vec<i64>,
    /// Total cost `sum cost * flow`.
    pub cost: i128,
    /// Number of simplex pivots (entering arcs) performed.
    pub iterations: u64,
}

/// A feasible starting point for the simplex: a spanning tree rooted at
/// `root` (`tree_arc[v]` is the arc joining `v` to its parent, unused for the
/// root) and a feasible flow in which every non-tree arc is at a bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Basis {
    pub root: usize,
    pub tree_arc: Vec<u32>,
    pub flow: Vec<i64>,
}

/// Solves `net` from scratch with an artificial starting basis (for networks
/// about which nothing is known, e.g. DIMACS files). Supplies must sum to
/// zero; otherwise the problem is reported infeasible.
///
/// ```
/// use fleet_engine::network::Network;
/// use fleet_engine::simplex::{solve, FlowStatus};
/// let mut net = Network::with_nodes(3);
/// net.supply = vec![2, 0, -2];
/// net.add_arc(0, 2, 1, 10); // direct but narrow
/// net.add_arc(0, 1, 5, 2);
/// net.add_arc(1, 2, 5, 3);
/// let sol = solve(&net);
/// assert_eq!(sol.status, FlowStatus::Optimal);
/// assert_eq!(sol.cost, 10);
/// ```
pub fn solve(net: &Network) -> FlowSolution {
    let n = net.node_count();
    let m = net.arc_count();
    // Unbalanced supplies, or one too large to route, cannot be met.
    if net.supply.iter().map(|&s| s as i128).sum::<i128>() != 0
        || net.supply.iter().any(|s| s.abs() >= UNBOUNDED)
    {
        return FlowSolution {
            status: FlowStatus::Infeasible,
            flow: vec![0; m],
            potential: vec![0; n],
            cost: 0,
            iterations: 0,
        };
    }
    // Extend with an artificial root joined to every node. Arcs towards the
    // root are free; arcs from it cost more than any simple path, so they
    // carry flow at the optimum only if the problem is infeasible.
    let max_cost = net.cost.iter().map(|c| c.unsigned_abs()).max().unwrap_or(0) as i128;
    let artificial = ((max_cost + 1) * (n as i128 + 1)).min(i64::MAX as i128 / 4) as i64;
    let mut ext = net.clone();
    let root = ext.add_node(0);
    let mut flow = vec![0; m];
    let mut tree_arc: Vec<u32> = net
        .supply
        .iter()
        .enumerate()
        .map(|(v, &s)| {
            flow.push(s.abs());
            let a = if s >= 0 {
                ext.add_arc(v, root, UNBOUNDED, 0)
            } else {
                ext.add_arc(root, v, UNBOUNDED, artificial)
            };
            a as u32
        })
        .collect();
    tree_arc.push(NONE); // the root has no tree arc
    let basis = Basis {
        root,
        tree_arc,
        flow,
    };
    let mut sol = solve_from(&ext, basis, m, m).expect("artificial basis is a valid tree");
    if sol.status == FlowStatus::Optimal && sol.flow[m..].iter().any(|&f| f != 0) {
        sol.status = FlowStatus::Infeasible;
    }
    sol.flow.truncate(m);
    sol.potential.truncate(n);
    sol.cost = net.flow_cost(&sol.flow);
    sol
}

/// Solves `net` starting from a feasible `basis`.
///
/// Only arcs `0..searchable` may enter the basis (later arcs are artificial
/// and, once they leave, stay out). Arcs `0..priority` are priced first: the
/// simplex runs to optimality over them, then continues over all searchable
/// arcs. With a good priority set (arcs likely to be used) the full set is
/// scanned only a few times, which is where most of the time would go.
///
/// Returns an error if `basis` is not a spanning tree with a feasible flow.
pub fn solve_from(
    net: &Network,
    basis: Basis,
    priority: usize,
    searchable: usize,
) -> Result<FlowSolution, String> {
    let mut s = NetworkSimplex::new(net, basis, priority.min(searchable), searchable)?;
    let status = s.run();
    Ok(s.solution(status))
}

/// A network simplex kept alive between solves, so a changed problem can be
/// re-optimised from the previous optimal basis (see [`NetworkSimplex::reoptimize`]).
#[derive(Debug, Clone)]
pub struct NetworkSimplex {
    supply: Vec<i64>,
    /// `position[a]` = internal index of the caller's arc `a`.
    position: Vec<u32>,
    /// Nodes whose tree arc may have left its bounds since the last solve,
    /// deepest first: repairing low in the tree cuts off small subtrees, and
    /// the repair's cycle usually restores the arcs above it as well.
    dirty: BinaryHeap<(u32, u32)>,
    /// Incident arcs per node (internal indices), built on the first warm solve.
    incident: Option<(Vec<u32>, Vec<u32>)>,
    mark: Vec<u32>,
    epoch: u32,
    // Arc data, stored in pricing order (see `interleave`).
    source: Vec<u32>,
    target: Vec<u32>,
    cost: Vec<i64>,
    cap: Vec<i64>,
    flow: Vec<i64>,
    state: Vec<i8>,
    /// `order[k]` = index in the caller's network of internal arc `k`.
    order: Vec<u32>,
    priority: usize,
    searchable: usize,
    // Tree data, per node.
    parent: Vec<u32>,
    pred: Vec<u32>,
    dir: Vec<i8>,
    depth: Vec<u32>,
    first_child: Vec<u32>,
    next_sibling: Vec<u32>,
    prev_sibling: Vec<u32>,
    pi: Vec<i64>,
    iterations: u64,
    /// Arcs priced or scanned and nodes re-priced so far: a machine-independent
    /// measure of effort, so a warm repair can tell when a cold solve would be cheaper.
    work: u64,
}

/// Pricing order: arcs with a common tail are usually adjacent in the input;
/// interleaving them with a stride makes every pricing block sample the whole
/// network instead of one node's arcs.
fn interleave(start: usize, end: usize, nodes: usize, order: &mut Vec<u32>) {
    let len = end - start;
    if len == 0 {
        return;
    }
    let stride = (len / nodes.max(1)).max(3).min(len);
    for offset in 0..stride {
        let mut k = offset;
        while k < len {
            order.push((start + k) as u32);
            k += stride;
        }
    }
}

impl NetworkSimplex {
    /// Prepares a simplex on `net` from a feasible `basis` (see [`solve_from`]).
    pub fn new(
        net: &Network,
        basis: Basis,
        priority: usize,
        searchable: usize,
    ) -> Result<Self, String> {
        let n = net.node_count();
        let m = net.arc_count();
        if basis.tree_arc.len() != n || basis.flow.len() != m || basis.root >= n {
            return Err("basis does not match the network".into());
        }
        let mut order = Vec::with_capacity(m);
        interleave(0, priority, n, &mut order);
        interleave(priority, searchable, n, &mut order);
        order.extend(searchable as u32..m as u32);
        let pick = |v: &[i64]| order.iter().map(|&a| v[a as usize]).collect::<Vec<_>>();
        let mut s = NetworkSimplex {
            supply: net.supply.clone(),
            position: Vec::new(),
            dirty: BinaryHeap::new(),
            incident: None,
            mark: vec![0; n],
            epoch: 0,
            source: order.iter().map(|&a| net.source[a as usize]).collect(),
            target: order.iter().map(|&a| net.target[a as usize]).collect(),
            cost: pick(&net.cost),
            cap: pick(&net.capacity),
            flow: pick(&basis.flow),
            state: vec![LOWER; m],
            priority,
            searchable,
            parent: vec![NONE; n],
            pred: vec![NONE; n],
            dir: vec![UP; n],
            depth: vec![0; n],
            first_child: vec![NONE; n],
            next_sibling: vec![NONE; n],
            prev_sibling: vec![NONE; n],
            pi: vec![0; n],
            iterations: 0,
            work: 0,
            order,
        };
        let mut position = vec![0u32; m];
        for (k, &a) in s.order.iter().enumerate() {
            position[a as usize] = k as u32;
        }
        s.position = position.clone();
        for v in 0..n {
            if v == basis.root {
                continue;
            }
            let a = basis.tree_arc[v];
            if a as usize >= m {
                return Err(format!("node {v} has no tree arc"));
            }
            let k = position[a as usize] as usize;
            let (from, to) = (s.source[k] as usize, s.target[k] as usize);
            let (p, d) = match (from == v, to == v) {
                (true, false) => (to, UP),
                (false, true) => (from, DOWN),
                _ => return Err(format!("tree arc {a} of node {v} does not touch it")),
            };
            s.parent[v] = p as u32;
            s.pred[v] = k as u32;
            s.dir[v] = d;
            s.state[k] = TREE;
            s.add_child(p as u32, v as u32);
        }
        for k in 0..m {
            if s.state[k] == TREE {
                continue;
            }
            s.state[k] = if s.flow[k] == 0 {
                LOWER
            } else if s.flow[k] == s.cap[k] {
                UPPER
            } else {
                return Err(format!(
                    "non-tree arc {} is strictly between its bounds",
                    s.order[k]
                ));
            };
        }
        // Potentials and depths from the root; also proves the tree spans.
        let root = basis.root as u32;
        s.parent[root as usize] = NONE;
        let visited = s.walk_subtree(root, |s, v| {
            let p = s.parent[v as usize];
            if p != NONE {
                let k = s.pred[v as usize] as usize;
                let (pp, c) = (s.pi[p as usize], s.cost[k]);
                // Tree arcs have zero reduced cost: cost + pi[from] - pi[to] = 0.
                s.pi[v as usize] = if s.dir[v as usize] == UP {
                    pp - c
                } else {
                    pp + c
                };
                s.depth[v as usize] = s.depth[p as usize] + 1;
            }
        });
        if visited != n {
            return Err(format!("basis tree reaches {visited} of {n} nodes"));
        }
        let mut balance = net.supply.clone();
        for k in 0..m {
            if s.flow[k] < 0 || s.flow[k] > s.cap[k] {
                return Err(format!("arc {} flow outside its bounds", s.order[k]));
            }
            balance[s.source[k] as usize] -= s.flow[k];
            balance[s.target[k] as usize] += s.flow[k];
        }
        if balance.iter().any(|&b| b != 0) {
            return Err("basis flow does not meet the supplies".into());
        }
        Ok(s)
    }

    fn add_child(&mut self, p: u32, c: u32) {
        let first = self.first_child[p as usize];
        self.next_sibling[c as usize] = first;
        self.prev_sibling[c as usize] = NONE;
        if first != NONE {
            self.prev_sibling[first as usize] = c;
        }
        self.first_child[p as usize] = c;
    }

    fn remove_child(&mut self, p: u32, c: u32) {
        let (prev, next) = (self.prev_sibling[c as usize], self.next_sibling[c as usize]);
        if prev != NONE {
            self.next_sibling[prev as usize] = next;
        } else {
            self.first_child[p as usize] = next;
        }
        if next != NONE {
            self.prev_sibling[next as usize] = prev;
        }
    }

    /// Visits `top` and all its descendants in preorder (parents before
    /// children) without recursion or a stack; returns how many were visited.
    fn walk_subtree(&mut self, top: u32, mut visit: impl FnMut(&mut Self, u32)) -> usize {
        let mut u = top;
        let mut count = 0;
        loop {
            visit(self, u);
            count += 1;
            let child = self.first_child[u as usize];
            if child != NONE {
                u = child;
                continue;
            }
            loop {
                if u == top {
                    return count;
                }
                let next = self.next_sibling[u as usize];
                if next != NONE {
                    u = next;
                    break;
                }
                u = self.parent[u as usize];
            }
        }
    }

    #[inline]
    fn reduced_cost(&self, k: usize) -> i64 {
        self.cost[k] + self.pi[self.source[k] as usize] - self.pi[self.target[k] as usize]
    }

    /// Block search: scan blocks of arcs from where the last search stopped
    /// and return the most violating arc of the first block that has one.
    fn find_entering(&mut self, next: &mut usize, end: usize, block: usize) -> Option<usize> {
        let mut best = 0i64;
        let mut best_arc = usize::MAX;
        let mut left = block;
        let mut scanned = 0u64;
        let start = (*next).min(end);
        for range in [start..end, 0..start] {
            for k in range {
                let violation = self.state[k] as i64 * self.reduced_cost(k);
                if violation < best {
                    best = violation;
                    best_arc = k;
                }
                left -= 1;
                if left == 0 {
                    scanned += block as u64;
                    if best < 0 {
                        *next = k + 1;
                        self.work += scanned;
                        return Some(best_arc);
                    }
                    left = block;
                }
            }
        }
        self.work += scanned + (block - left) as u64;
        if best < 0 {
            *next = 0;
            Some(best_arc)
        } else {
            None
        }
    }

    /// Runs primal simplex pivots until the basis is optimal.
    pub fn run(&mut self) -> FlowStatus {
        let mut next = 0;
        let mut end = self.priority;
        loop {
            let block = ((end as f64).sqrt() as usize).max(10);
            let entering = match self.find_entering(&mut next, end, block) {
                Some(k) => k,
                None if end < self.searchable => {
                    end = self.searchable;
                    next = 0;
                    continue;
                }
                None => return FlowStatus::Optimal,
            };
            self.iterations += 1;
            if !self.pivot(entering) {
                return FlowStatus::Unbounded;
            }
        }
    }

    /// One pivot on `entering`; false if the cycle it closes is unbounded.
    fn pivot(&mut self, entering: usize) -> bool {
        let (tail, head) = (self.source[entering], self.target[entering]);
        // The cycle: entering arc plus the tree paths from both ends to `join`.
        let join = self.join(tail, head);
        // Flow is pushed from `first` through the entering arc to `second`.
        let (first, second) = if self.state[entering] == LOWER {
            (tail, head)
        } else {
            (head, tail)
        };
        // Cunningham's rule: the last blocking arc in cycle order starting at
        // `join` leaves. Walking up from `first` runs against cycle order
        // (ties keep the earlier find); walking up from `second` runs along
        // it (ties take the later find).
        let mut delta = self.cap[entering];
        let mut leaving_side = 0;
        let mut u_out = NONE;
        let mut u = first;
        while u != join {
            let k = self.pred[u as usize] as usize;
            let room = if self.dir[u as usize] == UP {
                self.flow[k]
            } else {
                self.cap[k] - self.flow[k]
            };
            if room < delta {
                delta = room;
                u_out = u;
                leaving_side = 1;
            }
            u = self.parent[u as usize];
        }
        let mut u = second;
        while u != join {
            let k = self.pred[u as usize] as usize;
            let room = if self.dir[u as usize] == UP {
                self.cap[k] - self.flow[k]
            } else {
                self.flow[k]
            };
            if room <= delta {
                delta = room;
                u_out = u;
                leaving_side = 2;
            }
            u = self.parent[u as usize];
        }
        if delta >= UNBOUNDED / 2 {
            return false;
        }
        if delta > 0 {
            let push = self.state[entering] as i64 * delta;
            self.flow[entering] += push;
            let mut u = tail;
            while u != join {
                let k = self.pred[u as usize] as usize;
                self.flow[k] -= self.dir[u as usize] as i64 * push;
                u = self.parent[u as usize];
            }
            let mut u = head;
            while u != join {
                let k = self.pred[u as usize] as usize;
                self.flow[k] += self.dir[u as usize] as i64 * push;
                u = self.parent[u as usize];
            }
        }
        if leaving_side == 0 {
            // The entering arc itself blocks: it just swaps bounds.
            self.state[entering] = -self.state[entering];
            return true;
        }
        let leaving = self.pred[u_out as usize] as usize;
        self.state[entering] = TREE;
        self.state[leaving] = if self.flow[leaving] == 0 {
            LOWER
        } else {
            UPPER
        };
        let (u_in, v_in) = if leaving_side == 1 {
            (first, second)
        } else {
            (second, first)
        };
        self.rehang(u_in, v_in, u_out, entering as u32);
        self.update_subtree(u_in, v_in, entering);
        true
    }

    /// Cuts the subtree hanging from `u_out`, re-roots it at `u_in` by
    /// reversing the stem path `u_in .. u_out`, and hangs it below `v_in`
    /// through the entering arc.
    fn rehang(&mut self, u_in: u32, v_in: u32, u_out: u32, entering: u32) {
        let v_out = self.parent[u_out as usize];
        self.remove_child(v_out, u_out);
        let mut child = u_in;
        let mut new_parent = v_in;
        let mut arc = entering;
        let mut dir = if self.source[entering as usize] == u_in {
            UP
        } else {
            DOWN
        };
        loop {
            let old_parent = self.parent[child as usize];
            let old_arc = self.pred[child as usize];
            let old_dir = self.dir[child as usize];
            if child != u_out {
                self.remove_child(old_parent, child);
            }
            self.parent[child as usize] = new_parent;
            self.pred[child as usize] = arc;
            self.dir[child as usize] = dir;
            self.add_child(new_parent, child);
            if child == u_out {
                break;
            }
            new_parent = child;
            arc = old_arc;
            dir = -old_dir;
            child = old_parent;
        }
    }

    /// The current flow (in the caller's arc order), potentials and cost.
    pub fn solution(&self, status: FlowStatus) -> FlowSolution {
        let flow = self.flow();
        let cost = flow
            .iter()
            .zip(&self.position)
            .map(|(&f, &k)| f as i128 * self.cost[k as usize] as i128)
            .sum();
        FlowSolution {
            status,
            flow,
            potential: self.pi.clone(),
            cost,
            iterations: self.iterations,
        }
    }

    /// Flow on every arc, in the caller's arc order.
    pub fn flow(&self) -> Vec<i64> {
        self.position
            .iter()
            .map(|&k| self.flow[k as usize])
            .collect()
    }

    /// Total cost of the current flow.
    pub fn cost(&self) -> i128 {
        self.flow
            .iter()
            .zip(&self.cost)
            .map(|(&f, &c)| f as i128 * c as i128)
            .sum()
    }

    /// Pivots performed so far (primal and dual).
    pub fn iterations(&self) -> u64 {
        self.iterations
    }

    /// Sends `amount` more from `v` up the tree to the root, keeping flow
    /// conservation; tree arcs on the way may leave their bounds.
    fn push_to_root(&mut self, mut v: u32, amount: i64) {
        if amount == 0 {
            return;
        }
        while self.parent[v as usize] != NONE {
            let k = self.pred[v as usize] as usize;
            self.flow[k] += self.dir[v as usize] as i64 * amount;
            self.mark_dirty(v);
            v = self.parent[v as usize];
        }
    }

    fn mark_dirty(&mut self, v: u32) {
        self.dirty.push((self.depth[v as usize], v));
    }

    /// Changes a node's supply. The root absorbs the difference until its own
    /// supply is changed too: supplies must balance again before
    /// [`NetworkSimplex::reoptimize`].
    pub fn set_supply(&mut self, node: usize, supply: i64) {
        let change = supply - self.supply[node];
        self.supply[node] = supply;
        self.push_to_root(node as u32, change);
    }

    /// Changes the capacity of the caller's arc `arc`.
    pub fn set_capacity(&mut self, arc: usize, capacity: i64) {
        let k = self.position[arc] as usize;
        self.cap[k] = capacity;
        match self.state[k] {
            TREE => self.mark_dirty(self.tree_child(k)),
            UPPER => {
                // An arc at its upper bound stays there (its reduced cost says
                // it is worth using): its endpoints absorb the difference.
                let change = capacity - self.flow[k];
                self.flow[k] = capacity;
                let (s, t) = (self.source[k], self.target[k]);
                self.push_to_root(t, change);
                self.push_to_root(s, -change);
            }
            _ => {}
        }
    }

    /// The endpoint of tree arc `k` that hangs below the other.
    fn tree_child(&self, k: usize) -> u32 {
        let (s, t) = (self.source[k], self.target[k]);
        if self.pred[s as usize] == k as u32 && self.parent[s as usize] == t {
            s
        } else {
            t
        }
    }

    /// Re-optimises after supply and capacity changes by dual simplex pivots.
    ///
    /// The changes keep every reduced cost as it was, so the previous basis
    /// is still dual feasible (optimal prices); only some tree arcs now carry
    /// flow outside their bounds. Each dual pivot drives one such arc to its
    /// bound, letting in the cheapest arc across the cut it leaves (ratio
    /// test on reduced costs), so prices stay optimal throughout and the
    /// result is the same optimum a cold solve finds. Work is proportional to
    /// the subtrees cut off and the arcs they touch: small for a few changes
    /// in a small or shallow tree, but on large, deep, degenerate trees it can
    /// exceed a cold solve (measured in the README), hence the budget.
    ///
    /// Gives up (`None`, leaving the basis unusable) once the repair has
    /// cost `budget` units of [`NetworkSimplex::work`]: a caller that knows
    /// what a cold solve costs can then solve cold instead.
    pub fn reoptimize(&mut self, budget: u64) -> Option<FlowStatus> {
        if self.supply.iter().map(|&s| s as i128).sum::<i128>() != 0 {
            return Some(FlowStatus::Infeasible);
        }
        self.prepare_reoptimize();
        let limit = self.work.saturating_add(budget);
        while let Some((_, u)) = self.dirty.pop() {
            let u = u as usize;
            if self.parent[u] == NONE {
                continue;
            }
            let e = self.pred[u] as usize;
            let bound = if self.flow[e] < 0 {
                0
            } else if self.flow[e] > self.cap[e] {
                self.cap[e]
            } else {
                continue;
            };
            if self.work >= limit {
                return None;
            }
            if !self.dual_pivot(u as u32, e, bound) {
                return Some(FlowStatus::Infeasible);
            }
        }
        Some(FlowStatus::Optimal)
    }

    /// Effort spent so far (arcs priced or scanned, nodes re-priced).
    pub fn work(&self) -> u64 {
        self.work
    }

    /// Builds the per-node arc lists warm re-solves need (once; also done
    /// lazily by the first [`NetworkSimplex::reoptimize`]).
    pub fn prepare_reoptimize(&mut self) {
        if self.incident.is_none() {
            self.incident = Some(self.incidence());
        }
    }

    fn incidence(&self) -> (Vec<u32>, Vec<u32>) {
        let n = self.parent.len();
        let mut start = vec![0u32; n + 1];
        for k in 0..self.searchable {
            start[self.source[k] as usize + 1] += 1;
            start[self.target[k] as usize + 1] += 1;
        }
        for v in 0..n {
            start[v + 1] += start[v];
        }
        let mut fill = start.clone();
        let mut arcs = vec![0u32; start[n] as usize];
        for k in 0..self.searchable {
            for v in [self.source[k], self.target[k]] {
                arcs[fill[v as usize] as usize] = k as u32;
                fill[v as usize] += 1;
            }
        }
        (start, arcs)
    }

    /// One dual pivot: tree arc `e` (joining `u_out` to its parent) goes to
    /// `bound`; false if no arc can take over (the problem is infeasible).
    fn dual_pivot(&mut self, u_out: u32, e: usize, bound: i64) -> bool {
        // X = subtree below e. Flow through e from X outwards must change by
        // `change_out`; an arc across the cut has to carry the opposite.
        let change_out = self.dir[u_out as usize] as i64 * (bound - self.flow[e]);
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.mark.fill(0);
            self.epoch = 1;
        }
        let epoch = self.epoch;
        let mut members = Vec::new();
        self.walk_subtree(u_out, |s, v| {
            s.mark[v as usize] = epoch;
            members.push(v);
        });
        let (start, arcs) = self.incident.take().expect("incidence built");
        let mut best: Option<(i64, usize)> = None;
        for &x in &members {
            let incident = &arcs[start[x as usize] as usize..start[x as usize + 1] as usize];
            self.work += incident.len() as u64;
            for &k in incident {
                let k = k as usize;
                if k == e || self.state[k] == TREE {
                    continue;
                }
                let (s, t) = (self.source[k] as usize, self.target[k] as usize);
                let (s_in, t_in) = (self.mark[s] == epoch, self.mark[t] == epoch);
                if s_in == t_in {
                    continue;
                }
                // Moving this arc off its bound sends flow out of X if it
                // leaves X and is at lower bound, or enters X at upper bound.
                let sends_out = s_in == (self.state[k] == LOWER);
                if sends_out != (change_out < 0) {
                    continue;
                }
                let ratio = self.state[k] as i64 * self.reduced_cost(k);
                if best.is_none_or(|(r, _)| ratio < r) {
                    best = Some((ratio, k));
                }
            }
        }
        self.incident = Some((start, arcs));
        let Some((_, entering)) = best else {
            return false;
        };
        // Push |change_out| around the cycle the entering arc closes; it
        // passes through e and brings e exactly to its bound.
        let (tail, head) = (self.source[entering], self.target[entering]);
        let join = self.join(tail, head);
        let push = self.state[entering] as i64 * change_out.abs();
        self.flow[entering] += push;
        for (start, sign) in [(tail, -1i64), (head, 1)] {
            let mut v = start;
            while v != join {
                let k = self.pred[v as usize] as usize;
                self.flow[k] += sign * self.dir[v as usize] as i64 * push;
                self.mark_dirty(v);
                v = self.parent[v as usize];
            }
        }
        debug_assert_eq!(self.flow[e], bound);
        // The bound that was violated is where e rests: its reduced cost now
        // has the sign that bound needs (also when a capacity became 0).
        self.state[e] = if change_out * self.dir[u_out as usize] as i64 > 0 {
            LOWER
        } else {
            UPPER
        };
        self.state[entering] = TREE;
        let (u_in, v_in) = if self.mark[tail as usize] == epoch {
            (tail, head)
        } else {
            (head, tail)
        };
        self.iterations += 1;
        self.rehang(u_in, v_in, u_out, entering as u32);
        self.update_subtree(u_in, v_in, entering);
        self.mark_dirty(u_in);
        true
    }

    fn join(&self, a: u32, b: u32) -> u32 {
        let (mut u, mut v) = (a, b);
        while u != v {
            let (du, dv) = (self.depth[u as usize], self.depth[v as usize]);
            if du >= dv {
                u = self.parent[u as usize];
            }
            if dv >= du {
                v = self.parent[v as usize];
            }
        }
        u
    }

    /// After a rehang: shift the potentials of the moved subtree so the
    /// entering arc has zero reduced cost, and refresh its depths.
    fn update_subtree(&mut self, u_in: u32, v_in: u32, entering: usize) {
        let dir_in = self.dir[u_in as usize] as i64;
        let sigma = self.pi[v_in as usize] - self.pi[u_in as usize] - dir_in * self.cost[entering];
        // The same preorder walk as `walk_subtree`, tracking depth on the way
        // instead of reading each parent's: this loop is a quarter of a solve.
        let top = u_in as usize;
        let mut u = top;
        let mut depth = self.depth[v_in as usize] + 1;
        loop {
            self.work += 1;
            self.pi[u] += sigma;
            self.depth[u] = depth;
            let child = self.first_child[u];
            if child != NONE {
                u = child as usize;
                depth += 1;
                continue;
            }
            loop {
                if u == top {
                    return;
                }
                let next = self.next_sibling[u];
                if next != NONE {
                    u = next as usize;
                    break;
                }
                u = self.parent[u] as usize;
                depth -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infeasible_when_capacity_too_small() {
        let mut net = Network::with_nodes(2);
        net.supply = vec![3, -3];
        net.add_arc(0, 1, 2, 1);
        assert_eq!(solve(&net).status, FlowStatus::Infeasible);
    }

    #[test]
    fn unbalanced_supplies_are_infeasible() {
        let mut net = Network::with_nodes(2);
        net.supply = vec![3, -2];
        net.add_arc(0, 1, 9, 1);
        assert_eq!(solve(&net).status, FlowStatus::Infeasible);
    }

    #[test]
    fn unbounded_negative_cycle() {
        let mut net = Network::with_nodes(2);
        net.add_arc(0, 1, UNBOUNDED, -1);
        net.add_arc(1, 0, UNBOUNDED, 0);
        assert_eq!(solve(&net).status, FlowStatus::Unbounded);
    }

    #[test]
    fn saturates_negative_arcs_and_duals_certify_optimality() {
        let mut net = Network::with_nodes(4);
        net.supply = vec![4, 0, 0, -4];
        net.add_arc(0, 1, 3, 1);
        net.add_arc(0, 2, 4, 4);
        net.add_arc(1, 2, 2, -2);
        net.add_arc(1, 3, 2, 5);
        net.add_arc(2, 3, 5, 1);
        let sol = solve(&net);
        assert_eq!(sol.status, FlowStatus::Optimal);
        net.check_flow(&sol.flow).unwrap();
        // 2 units 0->1->2->3 (cost 1-2+1 = 0 each), 2 units 0->2->3 (5 each).
        assert_eq!(sol.cost, 10);
        for a in 0..net.arc_count() {
            let rc = net.cost[a] + sol.potential[net.source[a] as usize]
                - sol.potential[net.target[a] as usize];
            if sol.flow[a] < net.capacity[a] {
                assert!(rc >= 0, "arc {a} could still improve");
            }
            if sol.flow[a] > 0 {
                assert!(rc <= 0, "arc {a} should be emptied");
            }
        }
    }
}
