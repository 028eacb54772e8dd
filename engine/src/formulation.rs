//! Turns a [`Problem`] into a min-cost-flow [`Network`] and back.
//!
//! Zone costs are convex and piecewise linear in the number of vehicles a
//! zone ends with, so each zone (and period) gets three parallel "stay" arcs
//! into the future: the first `min_vehicles` vehicles earn
//! `unmet + coverage` each, the next `target - min_vehicles` earn `unmet`,
//! the rest earn nothing (negative cost = avoided penalty). Minimising the
//! flow cost then minimises the design's objective minus a constant.
//!
//! Two layouts:
//! - **direct** (default): per period a start node `S(i,p)` holding the
//!   vehicles available in zone `i` and an end node `E(i,p)` counting those
//!   that end the period there. Moves go `S(i,p) -> E(j,p')`, so each move is
//!   exactly one `x_ij` of the design and `sum_j x_ij <= s_i` holds by
//!   construction. With one period this is a transportation problem.
//! - **transshipment** (`neighbours: k`, one period): one node per zone and
//!   arcs only to the `k` nearest zones (both directions). Vehicles route
//!   through intermediate zones, so a sparse graph still reaches far zones;
//!   each route is reported as one move with its total km.

use crate::geo::{k_nearest_all, LatLon};
use crate::model::Problem;
use crate::network::{Network, UNBOUNDED};
use crate::simplex::{solve_from, Basis, FlowSolution};

/// Integer cost units per unit of money: costs are rounded to 1/1000.
pub const COST_SCALE: f64 = 1000.0;

/// How zones and periods map to nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Direct { zones: usize, periods: usize },
    Transshipment { zones: usize },
}

/// A problem's network plus what is needed to read a solution back.
#[derive(Debug, Clone)]
pub struct Formulation {
    pub network: Network,
    pub layout: Layout,
    /// The fleet-wide sink every vehicle ends in.
    pub sink: usize,
    /// Arcs `move_start..` are moves; `km[k - move_start]` is their length.
    pub move_start: usize,
    pub km: Vec<f64>,
    /// Arcs `0..priority` are priced first (see [`crate::simplex::solve_from`]).
    pub priority: usize,
    /// The "nobody moves" plan as a feasible simplex basis.
    pub basis: Basis,
}

/// Integer cost of driving `km`.
pub fn move_cost(problem: &Problem, km: f64) -> i64 {
    (problem.costs.per_km * km * COST_SCALE).round() as i64
}

/// Integer benefit of one vehicle below the floor and one below the target.
fn benefits(problem: &Problem) -> (i64, i64) {
    let c = &problem.costs;
    let below_target = (c.unmet_penalty * COST_SCALE).round() as i64;
    let below_floor = ((c.unmet_penalty + c.coverage_penalty) * COST_SCALE).round() as i64;
    (below_floor, below_target)
}

impl Layout {
    pub fn zones(&self) -> usize {
        match *self {
            Layout::Direct { zones, .. } | Layout::Transshipment { zones } => zones,
        }
    }

    pub fn periods(&self) -> usize {
        match *self {
            Layout::Direct { periods, .. } => periods,
            Layout::Transshipment { .. } => 1,
        }
    }

    /// Node where zone `i`'s vehicles are available at the start of period `p`.
    pub fn start_node(&self, i: usize, p: usize) -> usize {
        match *self {
            Layout::Direct { zones, .. } => 2 * zones * p + i,
            Layout::Transshipment { .. } => i,
        }
    }

    /// Node counting the vehicles that end period `p` in zone `i`.
    pub fn end_node(&self, i: usize, p: usize) -> usize {
        match *self {
            Layout::Direct { zones, .. } => 2 * zones * p + zones + i,
            Layout::Transshipment { .. } => i,
        }
    }

    /// Zone and period of a node (the sink has none).
    pub fn zone_period(&self, node: usize) -> Option<(usize, usize)> {
        match *self {
            Layout::Direct { zones, periods } => (node < 2 * zones * periods)
                .then(|| ((node % (2 * zones)) % zones, node / (2 * zones))),
            Layout::Transshipment { zones } => (node < zones).then_some((node, 0)),
        }
    }

    /// The arc of zone `i`'s vehicles that stay put in period `p` (direct layout).
    pub fn stay_arc(&self, i: usize, p: usize) -> Option<usize> {
        match *self {
            Layout::Direct { zones, periods } => Some(3 * zones * periods + p * zones + i),
            Layout::Transshipment { .. } => None,
        }
    }

    /// First of the three penalty arcs of zone `i` in period `p`; they are
    /// always arcs `3 * (p * zones + i) ..+3` (below floor, below target, above).
    pub fn penalty_arc(&self, i: usize, p: usize) -> usize {
        3 * (p * self.zones() + i)
    }
}

fn zone_points(problem: &Problem) -> Vec<LatLon> {
    problem
        .zones
        .iter()
        .map(|z| LatLon {
            lat: z.lat,
            lon: z.lon,
        })
        .collect()
}

impl Formulation {
    fn new(
        problem: &Problem,
        network: Network,
        layout: Layout,
        sink: usize,
        move_start: usize,
        km: Vec<f64>,
        priority: usize,
    ) -> Self {
        let basis = Basis {
            root: sink,
            tree_arc: Vec::new(),
            flow: Vec::new(),
        };
        let mut f = Formulation {
            network,
            layout,
            sink,
            move_start,
            km,
            priority,
            basis,
        };
        f.rebase(problem);
        f
    }

    /// Points the network at `problem`'s current idle counts, targets and
    /// floors (same zones, travel and costs as formulated; only the counts
    /// may differ) and resets the starting basis to its "nobody moves" plan:
    /// every vehicle stays put and fills its zone's most valuable penalty arcs
    /// first. Cheaper than formulating again: no distance or arc is rebuilt.
    pub fn rebase(&mut self, problem: &Problem) {
        let (layout, sink) = (self.layout, self.sink);
        let (n, periods) = (layout.zones(), layout.periods());
        let net = &mut self.network;
        let mut tree_arc = vec![u32::MAX; net.node_count()];
        let mut flow = vec![0; net.arc_count()];
        for p in 0..periods {
            for i in 0..n {
                let staying: i64 = (0..=p).map(|q| problem.available(i, q) as i64).sum();
                let (floor, target) = (problem.floor(i, p) as i64, problem.target(i, p) as i64);
                let first = layout.penalty_arc(i, p);
                let mut left = staying;
                let mut tree = None;
                for (k, cap) in [floor, target - floor, UNBOUNDED].into_iter().enumerate() {
                    net.capacity[first + k] = cap;
                    flow[first + k] = left.min(cap);
                    left -= flow[first + k];
                    if tree.is_none() && flow[first + k] < cap {
                        tree = Some(first + k);
                    }
                }
                tree_arc[layout.end_node(i, p)] =
                    tree.expect("the last penalty arc is unbounded") as u32;
                if let Some(stay) = layout.stay_arc(i, p) {
                    flow[stay] = staying;
                    tree_arc[layout.start_node(i, p)] = stay as u32;
                }
                net.supply[layout.start_node(i, p)] = problem.available(i, p) as i64;
            }
        }
        net.supply[sink] = 0;
        net.supply[sink] = -net.supply.iter().sum::<i64>();
        self.basis = Basis {
            root: sink,
            tree_arc,
            flow,
        };
    }

    /// Solves this network cold from its do-nothing basis.
    pub fn solve(&self) -> FlowSolution {
        solve_from(
            &self.network,
            self.basis.clone(),
            self.priority,
            self.network.arc_count(),
        )
        .expect("the do-nothing basis of a formulation is a valid spanning tree")
    }
}

/// Builds the network of `problem` (which must be valid).
pub fn formulate(problem: &Problem) -> Formulation {
    let n = problem.zones.len();
    let layout = match (problem.neighbours, problem.horizon.is_some()) {
        (Some(_), false) => Layout::Transshipment { zones: n },
        _ => Layout::Direct {
            zones: n,
            periods: problem.periods(),
        },
    };
    let periods = layout.periods();
    let node_count = match layout {
        Layout::Direct { .. } => 2 * n * periods + 1,
        Layout::Transshipment { .. } => n + 1,
    };
    let sink = node_count - 1;
    let mut net = Network::with_nodes(node_count);
    let (below_floor, below_target) = benefits(problem);

    // Penalty arcs (capacities are set by `rebase`): per zone and period,
    // below floor, below target, above target.
    for p in 0..periods {
        for i in 0..n {
            let from = layout.end_node(i, p);
            let to = if p + 1 < periods {
                layout.start_node(i, p + 1)
            } else {
                sink
            };
            for cost in [-below_floor, -below_target, 0] {
                net.add_arc(from, to, 0, cost);
            }
        }
    }
    // Direct layout: vehicles that do not move ("stay" arcs S -> E).
    if let Layout::Direct { .. } = layout {
        for p in 0..periods {
            for i in 0..n {
                net.add_arc(layout.start_node(i, p), layout.end_node(i, p), UNBOUNDED, 0);
            }
        }
    }

    // Moves. A move that costs at least everything it could ever earn (the
    // floor benefit in each remaining period) is never needed for an optimum.
    let move_start = net.arc_count();
    let mut km = Vec::new();
    let gives = |i: usize| {
        let s = problem.available(i, 0);
        s > problem.zones[i].target
            || (problem.costs.coverage_penalty > 0.0 && s > problem.zones[i].min_vehicles)
    };
    let takes = |j: usize| problem.available(j, 0) < problem.zones[j].target;
    let allowed =
        |i: usize, j: usize, d: f64| i != j && problem.max_move_km.is_none_or(|max| d <= max);
    match layout {
        Layout::Transshipment { .. } => {
            let near = k_nearest_all(&zone_points(problem), problem.neighbours.unwrap_or(1));
            let mut pairs: Vec<(u32, u32)> = Vec::new();
            for (i, list) in near.iter().enumerate() {
                for &j in list {
                    pairs.push((i as u32, j as u32));
                    pairs.push((j as u32, i as u32));
                }
            }
            pairs.sort_unstable();
            pairs.dedup();
            for (i, j) in pairs {
                let (i, j) = (i as usize, j as usize);
                let d = problem.distance_km(i, j);
                let c = move_cost(problem, d);
                if allowed(i, j, d) && c < below_floor {
                    net.add_arc(i, j, UNBOUNDED, c);
                    km.push(d);
                }
            }
        }
        Layout::Direct { .. } => {
            let period_minutes = problem
                .horizon
                .as_ref()
                .map(|h| (h.period_minutes, h.speed_kmh));
            let near = problem
                .neighbours
                .map(|k| k_nearest_all(&zone_points(problem), k));
            // Single period: likely moves (surplus -> deficit) first, the rest after.
            let mut later: Vec<(usize, usize, i64, f64)> = Vec::new();
            for p in 0..periods {
                for i in 0..n {
                    let mut consider = |j: usize| {
                        let d = problem.distance_km(i, j);
                        if !allowed(i, j, d) {
                            return;
                        }
                        let travel_periods = period_minutes.map_or(1, |(minutes, speed)| {
                            ((d / speed * 60.0 / minutes).ceil() as usize).max(1)
                        });
                        let arrive = p + travel_periods - 1;
                        let c = move_cost(problem, d);
                        if arrive >= periods || c >= below_floor * (periods - arrive) as i64 {
                            return;
                        }
                        let (from, to) = (layout.start_node(i, p), layout.end_node(j, arrive));
                        if periods == 1 && !(gives(i) && takes(j)) {
                            later.push((from, to, c, d));
                        } else {
                            net.add_arc(from, to, UNBOUNDED, c);
                            km.push(d);
                        }
                    };
                    match &near {
                        Some(near) => near[i].iter().for_each(|&j| consider(j)),
                        None => (0..n).for_each(&mut consider),
                    }
                }
            }
            let priority_end = net.arc_count();
            for (from, to, c, d) in later {
                net.add_arc(from, to, UNBOUNDED, c);
                km.push(d);
            }
            return Formulation::new(problem, net, layout, sink, move_start, km, priority_end);
        }
    }
    let priority = net.arc_count();
    Formulation::new(problem, net, layout, sink, move_start, km, priority)
}
