//! Reading a solved network back as a rebalancing plan: where vehicles end
//! up, the moves (with why), and each objective reported separately.

use ndarray::Array2;

use crate::formulation::{Formulation, Layout};
use crate::model::Problem;

/// The objectives of DESIGN.md section 2, reported separately.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Objectives {
    /// Empty km driven by all moves.
    pub empty_km: f64,
    /// `per_km * empty_km`.
    pub move_cost: f64,
    /// Vehicles short of target, summed over zones (and periods).
    pub unmet: u64,
    /// Vehicles short of the coverage floor, summed over zones (and periods).
    pub coverage_shortfall: u64,
    /// Zones (zone-periods) ending below their coverage floor.
    pub coverage_gaps: u64,
    /// Share of the targets met: `sum min(a_i, t_i) / sum t_i` (1 when no target).
    pub served_ratio: f64,
}

impl Objectives {
    /// The minimised total: move cost plus penalties.
    pub fn total(&self, problem: &Problem) -> f64 {
        let c = &problem.costs;
        self.move_cost
            + c.unmet_penalty * self.unmet as f64
            + c.coverage_penalty * self.coverage_shortfall as f64
    }
}

/// Why a move is recommended, in numbers an operator can check.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Idle vehicles at the origin beyond its target before moving (may be
    /// negative when a zone gives up vehicles to fill a coverage gap).
    pub source_surplus: i64,
    /// Vehicles the destination lacks to reach its target before moving.
    pub destination_deficit: i64,
    /// Penalty avoided at the destination minus penalty incurred at the
    /// origin minus driving cost, per vehicle of this move, holding all
    /// other moves of the plan fixed.
    pub benefit_per_vehicle: f64,
    /// The same in words.
    pub reason: String,
}

/// `vehicles` vehicles drive from zone `from` to zone `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    pub from: usize,
    pub to: usize,
    pub vehicles: u32,
    /// km per vehicle (the whole route on a neighbour graph).
    pub km: f64,
    /// Driving cost of all vehicles of the move.
    pub cost: f64,
    /// Period the vehicles leave in and the period whose end they arrive by.
    pub depart_period: usize,
    pub arrive_period: usize,
    pub why: Explanation,
}

/// An optimal rebalancing plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub objectives: Objectives,
    /// The minimised objective (DESIGN.md section 2).
    pub objective: f64,
    pub moves: Vec<Move>,
    /// Vehicles each zone (row) ends each period (column) with.
    pub vehicles_after: Array2<u32>,
}

/// Penalty of ending a period with `a` vehicles against `target` and `floor`.
fn penalty(problem: &Problem, a: i64, target: u32, floor: u32) -> f64 {
    let c = &problem.costs;
    c.unmet_penalty * (target as i64 - a).max(0) as f64
        + c.coverage_penalty * (floor as i64 - a).max(0) as f64
}

/// Reads the plan of an optimal `flow` on `f` (the formulation of `problem`).
pub fn read_plan(problem: &Problem, f: &Formulation, flow: &[i64]) -> Plan {
    let (n, periods) = (f.layout.zones(), f.layout.periods());
    let mut after = Array2::<u32>::zeros((n, periods));
    for p in 0..periods {
        for i in 0..n {
            let a = f.layout.penalty_arc(i, p);
            after[[i, p]] = flow[a..a + 3].iter().sum::<i64>() as u32;
        }
    }
    let routes = match f.layout {
        Layout::Direct { .. } => direct_moves(f, flow),
        Layout::Transshipment { .. } => routes(f, flow),
    };
    // `+ 0.0` turns the empty sum's -0.0 into 0.0.
    let empty_km: f64 = routes.iter().map(|r| r.3 * r.2 as f64).sum::<f64>() + 0.0;
    let moves = routes
        .into_iter()
        .map(|(from, to, vehicles, km, depart, arrive)| {
            explain(problem, &after, from, to, vehicles, km, depart, arrive)
        })
        .collect();
    let mut o = Objectives {
        empty_km,
        move_cost: problem.costs.per_km * empty_km,
        ..Default::default()
    };
    let (mut met, mut wanted) = (0u64, 0u64);
    for ((i, p), &a) in after.indexed_iter() {
        let (t, m) = (problem.target(i, p), problem.floor(i, p));
        o.unmet += t.saturating_sub(a) as u64;
        o.coverage_shortfall += m.saturating_sub(a) as u64;
        o.coverage_gaps += (a < m) as u64;
        met += a.min(t) as u64;
        wanted += t as u64;
    }
    o.served_ratio = if wanted == 0 {
        1.0
    } else {
        met as f64 / wanted as f64
    };
    Plan {
        objective: o.total(problem),
        objectives: o,
        moves,
        vehicles_after: after,
    }
}

type Route = (usize, usize, u32, f64, usize, usize);

fn direct_moves(f: &Formulation, flow: &[i64]) -> Vec<Route> {
    let net = &f.network;
    (f.move_start..net.arc_count())
        .filter(|&a| flow[a] > 0)
        .filter_map(|a| {
            let (i, p) = f.layout.zone_period(net.source[a] as usize)?;
            let (j, q) = f.layout.zone_period(net.target[a] as usize)?;
            Some((i, j, flow[a] as u32, f.km[a - f.move_start], p, q))
        })
        .collect()
}

/// Decomposes the flow on zone-to-zone arcs into origin -> destination routes.
fn routes(f: &Formulation, flow: &[i64]) -> Vec<Route> {
    let net = &f.network;
    let n = f.layout.zones();
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut net_out = vec![0i64; n];
    let mut left = flow.to_vec();
    for (a, &x) in flow.iter().enumerate().skip(f.move_start) {
        if x > 0 {
            let (s, t) = (net.source[a] as usize, net.target[a] as usize);
            out[s].push(a);
            net_out[s] += x;
            net_out[t] -= x;
        }
    }
    let mut result: Vec<Route> = Vec::new();
    for origin in 0..n {
        while net_out[origin] > 0 {
            // Follow arcs with flow left until a zone that absorbs flow.
            let mut path = Vec::new();
            let mut v = origin;
            let mut amount = net_out[origin];
            while v == origin || net_out[v] >= 0 {
                let Some(&a) = out[v].iter().find(|&&a| left[a] > 0) else {
                    break;
                };
                amount = amount.min(left[a]);
                path.push(a);
                v = net.target[a] as usize;
                if path.len() > n {
                    break; // a zero-cost cycle; cannot occur in an optimum with positive km
                }
            }
            if path.is_empty() || net_out[v] >= 0 {
                break;
            }
            amount = amount.min(-net_out[v]);
            let mut km = 0.0;
            for &a in &path {
                left[a] -= amount;
                km += f.km[a - f.move_start];
            }
            net_out[origin] -= amount;
            net_out[v] += amount;
            match result
                .iter_mut()
                .find(|r| r.0 == origin && r.1 == v && (r.3 - km).abs() < 1e-9)
            {
                Some(r) => r.2 += amount as u32,
                None => result.push((origin, v, amount as u32, km, 0, 0)),
            }
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn explain(
    problem: &Problem,
    after: &Array2<u32>,
    from: usize,
    to: usize,
    vehicles: u32,
    km: f64,
    depart: usize,
    arrive: usize,
) -> Move {
    let (zf, zt) = (&problem.zones[from], &problem.zones[to]);
    let k = vehicles as i64;
    let (tf, mf) = (problem.target(from, arrive), problem.floor(from, arrive));
    let (tt, mt) = (problem.target(to, arrive), problem.floor(to, arrive));
    let (af, at) = (after[[from, arrive]] as i64, after[[to, arrive]] as i64);
    let gained = penalty(problem, at - k, tt, mt) - penalty(problem, at, tt, mt);
    let lost = penalty(problem, af, tf, mf) - penalty(problem, af + k, tf, mf);
    let per_vehicle_cost = problem.costs.per_km * km;
    let benefit = (gained - lost) / k as f64 - per_vehicle_cost;
    let surplus = problem.available(from, depart) as i64 - problem.target(from, depart) as i64;
    // Idle now at the destination: what the deficit is measured against.
    let dest_idle = problem.available(to, 0);
    let deficit = problem.target(to, arrive) as i64 - dest_idle as i64;
    let reason = format!(
        "zone {} has {} idle for a target of {}; zone {} has {} for a target of {}: \
         each of the {} vehicles avoids {:.2} of penalty at the destination, costs {:.2} at the origin \
         and {:.2} to drive {:.1} km",
        zf.id,
        problem.available(from, depart),
        problem.target(from, depart),
        zt.id,
        dest_idle,
        tt,
        vehicles,
        gained / k as f64,
        lost / k as f64,
        per_vehicle_cost,
        km
    );
    Move {
        from,
        to,
        vehicles,
        km,
        cost: per_vehicle_cost * vehicles as f64,
        depart_period: depart,
        arrive_period: arrive,
        why: Explanation {
            source_surplus: surplus,
            destination_deficit: deficit,
            benefit_per_vehicle: benefit,
            reason,
        },
    }
}
