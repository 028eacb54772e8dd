//! Continuous rebalancing: each closed window updates zone supply and the
//! demand forecast, the engine repairs its previous optimum (warm start),
//! and the new plan is diffed against the previous one so that only new or
//! changed recommendations go out.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use fleet_engine::model::{Costs, Problem, Travel, Zone};
use fleet_engine::optimize::{Rebalancer, SolveError};

use crate::window::ClosedWindow;
use crate::zones::{ZoneInfo, ZoneMap};

/// How windows become a rebalancing problem.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RebalanceConfig {
    pub costs: Costs,
    /// Road km per straight km.
    pub detour_factor: f64,
    /// Share of demand to be ready for: a zone's target is the smallest k
    /// with P(Poisson(expected requests) <= k) >= this.
    pub service_level: f64,
    /// Weight of the newest window in the smoothed demand (0, 1].
    pub smoothing: f64,
    /// Moves only to the k nearest zones (sparse graph) above this many zones.
    pub dense_up_to: usize,
    pub neighbours: usize,
    pub max_move_km: Option<f64>,
}

impl Default for RebalanceConfig {
    fn default() -> Self {
        RebalanceConfig {
            costs: Costs::DESIGN_EXAMPLE,
            detour_factor: 1.3,
            service_level: 0.9,
            smoothing: 0.5,
            dense_up_to: 400,
            neighbours: 16,
            max_move_km: None,
        }
    }
}

/// A recommended move in a window's plan.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlannedMove {
    pub from_zone: String,
    pub to_zone: String,
    pub vehicles: u32,
    pub km: f64,
    pub cost: f64,
    pub benefit_per_vehicle: f64,
    pub explanation: String,
}

/// A zone's supply against its target in a window's problem: what the
/// dashboard colours (the targets exist only here, computed from the
/// smoothed demand, so the plan carries them out).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ZoneBalance {
    pub id: String,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    /// Idle vehicles at the window's end.
    pub supply: u32,
    /// Vehicles wanted (the Poisson service-level target, less vehicles about to free up).
    pub target: u32,
    /// Coverage floor.
    pub floor: u32,
}

/// What one window produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WindowPlan {
    pub start_ms: i64,
    pub end_ms: i64,
    pub zones: usize,
    pub objective: f64,
    pub unmet: u64,
    pub empty_km: f64,
    /// The whole current plan.
    pub moves: Vec<PlannedMove>,
    /// Moves new or changed since the previous window (what is emitted).
    pub changed: Vec<PlannedMove>,
    /// (from, to) of moves the previous plan had and this one drops.
    pub withdrawn: Vec<(String, String)>,
    /// Every zone of the problem, in problem order.
    pub balance: Vec<ZoneBalance>,
    pub solve_ms: f64,
    pub warm_pivots: u64,
    pub warm_fallback: bool,
}

/// Keeps a fleet's plan optimal as windows close.
#[derive(Debug)]
pub struct ContinuousRebalancer {
    config: RebalanceConfig,
    /// Zone keys in problem order, and the reverse.
    keys: Vec<u64>,
    infos: Vec<ZoneInfo>,
    position: HashMap<u64, usize>,
    /// Smoothed requests per window, per zone.
    demand: Vec<f64>,
    engine: Option<Rebalancer>,
    previous: BTreeMap<(String, String), PlannedMove>,
}

impl ContinuousRebalancer {
    pub fn new(config: RebalanceConfig, zones: &dyn ZoneMap) -> Self {
        let mut me = ContinuousRebalancer {
            config,
            keys: Vec::new(),
            infos: Vec::new(),
            position: HashMap::new(),
            demand: Vec::new(),
            engine: None,
            previous: BTreeMap::new(),
        };
        for key in zones.all().unwrap_or_default() {
            me.add_zone(key, zones);
        }
        me
    }

    /// The smoothed demand per zone key (for a checkpoint).
    pub fn demand(&self) -> Vec<(u64, f64)> {
        self.keys
            .iter()
            .copied()
            .zip(self.demand.iter().copied())
            .collect()
    }

    /// Continues from a checkpoint: the smoothed demand, and `plan` as the
    /// previous window's, so moves it already holds are not emitted again.
    pub fn restore(&mut self, demand: &[(u64, f64)], plan: Vec<PlannedMove>, zones: &dyn ZoneMap) {
        for &(key, d) in demand {
            self.add_zone(key, zones);
            if let Some(&i) = self.position.get(&key) {
                self.demand[i] = d;
            }
        }
        self.engine = None;
        self.previous = plan
            .into_iter()
            .map(|m| ((m.from_zone.clone(), m.to_zone.clone()), m))
            .collect();
    }

    fn add_zone(&mut self, key: u64, zones: &dyn ZoneMap) -> bool {
        if self.position.contains_key(&key) {
            return false;
        }
        let Some(info) = zones.describe(key) else {
            return false;
        };
        self.position.insert(key, self.keys.len());
        self.keys.push(key);
        self.infos.push(info);
        self.demand.push(0.0);
        true
    }

    fn problem(&self, idle: &[u32], target: &[u32], floor: &[u32]) -> Problem {
        let n = self.infos.len();
        Problem {
            zones: (0..n)
                .map(|i| Zone {
                    id: self.infos[i].id.clone(),
                    lat: self.infos[i].lat,
                    lon: self.infos[i].lon,
                    idle: idle[i],
                    target: target[i],
                    min_vehicles: floor[i],
                })
                .collect(),
            travel: Travel::Haversine {
                detour_factor: self.config.detour_factor,
            },
            costs: self.config.costs,
            max_move_km: self.config.max_move_km,
            neighbours: (n > self.config.dense_up_to).then_some(self.config.neighbours.min(n - 1)),
            horizon: None,
        }
    }

    /// Re-plans after a closed window.
    pub fn on_window(
        &mut self,
        window: &ClosedWindow,
        zones: &dyn ZoneMap,
    ) -> Result<WindowPlan, SolveError> {
        let mut grew = false;
        for z in &window.zones {
            grew |= self.add_zone(z.zone, zones);
        }
        let n = self.keys.len();
        let (mut requests, mut idle) = (vec![0i64; n], vec![0u32; n]);
        let mut soon = vec![0i64; n];
        for z in &window.zones {
            if let Some(&i) = self.position.get(&z.zone) {
                requests[i] = z.requests;
                idle[i] = z.idle.clamp(0, fleet_engine::model::MAX_VEHICLES as i64) as u32;
                soon[i] = z.soon_idle;
            }
        }
        let a = self.config.smoothing;
        for (d, &r) in self.demand.iter_mut().zip(&requests) {
            *d = a * r as f64 + (1.0 - a) * *d;
        }
        let expected = ndarray::Array1::from(self.demand.clone());
        let wanted = fleet_engine::forecast::targets(expected.view(), self.config.service_level)
            .map_err(|e| SolveError::Internal(e.to_string()))?;
        // Vehicles about to free up in a zone count towards its target.
        let target: Vec<u32> = (0..n)
            .map(|i| {
                (wanted[i] as i64 - soon[i].max(0))
                    .clamp(0, fleet_engine::model::MAX_VEHICLES as i64) as u32
            })
            .collect();
        // Coverage floor: one vehicle wherever at least one request is expected.
        let floor: Vec<u32> = (0..n)
            .map(|i| u32::from(self.demand[i] >= 1.0).min(target[i]))
            .collect();
        let start = Instant::now();
        let solved = match &mut self.engine {
            Some(engine) if !grew => {
                for i in 0..n {
                    let z = &engine.problem().zones[i];
                    if (z.idle, z.target, z.min_vehicles) != (idle[i], target[i], floor[i]) {
                        engine.set_zone(i, idle[i], target[i], floor[i])?;
                    }
                }
                engine.resolve()?
            }
            _ => {
                let mut engine = Rebalancer::new(self.problem(&idle, &target, &floor))?;
                let solved = engine.resolve()?;
                self.engine = Some(engine);
                solved
            }
        };
        let solve_ms = start.elapsed().as_secs_f64() * 1e3;
        let plan = &solved.plan;
        let moves: Vec<PlannedMove> = plan
            .moves
            .iter()
            .map(|m| PlannedMove {
                from_zone: self.infos[m.from].id.clone(),
                to_zone: self.infos[m.to].id.clone(),
                vehicles: m.vehicles,
                km: m.km,
                cost: m.cost,
                benefit_per_vehicle: m.why.benefit_per_vehicle,
                explanation: m.why.reason.clone(),
            })
            .collect();
        let current: BTreeMap<(String, String), PlannedMove> = moves
            .iter()
            .map(|m| ((m.from_zone.clone(), m.to_zone.clone()), m.clone()))
            .collect();
        let changed = moves
            .iter()
            .filter(|m| {
                self.previous
                    .get(&(m.from_zone.clone(), m.to_zone.clone()))
                    .is_none_or(|p| p.vehicles != m.vehicles)
            })
            .cloned()
            .collect();
        let withdrawn = self
            .previous
            .keys()
            .filter(|k| !current.contains_key(*k))
            .cloned()
            .collect();
        self.previous = current;
        let balance = self
            .infos
            .iter()
            .enumerate()
            .map(|(i, info)| ZoneBalance {
                id: info.id.clone(),
                name: info.name.clone(),
                lat: info.lat,
                lon: info.lon,
                supply: idle[i],
                target: target[i],
                floor: floor[i],
            })
            .collect();
        Ok(WindowPlan {
            start_ms: window.start_ms,
            end_ms: window.end_ms,
            zones: n,
            objective: plan.objective,
            unmet: plan.objectives.unmet,
            empty_km: plan.objectives.empty_km,
            moves,
            changed,
            withdrawn,
            balance,
            solve_ms,
            warm_pivots: solved.stats.warm_pivots,
            warm_fallback: solved.stats.warm_fallback,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::ZoneWindow;
    use crate::zones::CentroidZones;

    fn zones() -> CentroidZones {
        let z = |id: &str, lat| ZoneInfo {
            id: id.into(),
            name: id.into(),
            lat,
            lon: -73.98,
        };
        CentroidZones::new(vec![z("a", 40.70), z("b", 40.72), z("c", 40.74)], 3.0).unwrap()
    }

    fn window(end_ms: i64, rows: &[(u64, i64, i64)]) -> ClosedWindow {
        ClosedWindow {
            start_ms: end_ms - 1000,
            end_ms,
            zones: rows
                .iter()
                .map(|&(zone, requests, idle)| ZoneWindow {
                    zone,
                    requests,
                    idle,
                    soon_idle: 0,
                    unserved: (requests - idle).max(0),
                })
                .collect(),
            vehicles: Vec::new(),
        }
    }

    #[test]
    fn only_new_or_changed_moves_are_emitted_and_plans_match_a_cold_solve() {
        let zones = zones();
        let cfg = RebalanceConfig {
            smoothing: 1.0,
            ..Default::default()
        };
        let mut reb = ContinuousRebalancer::new(cfg, &zones);
        // Demand in c, idle vehicles in a.
        let w1 = window(1000, &[(0, 0, 10), (2, 6, 0)]);
        let p1 = reb.on_window(&w1, &zones).unwrap();
        assert!(!p1.moves.is_empty());
        assert_eq!(p1.changed, p1.moves, "everything is new at first");
        // Every zone's supply and target go out with the plan: a has a
        // surplus, c a deficit.
        let ids: Vec<&str> = p1.balance.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(p1.balance[0].supply, 10);
        assert_eq!(p1.balance[0].target, 0);
        assert!(p1.balance[2].target > p1.balance[2].supply);
        // The same window again: the same plan, nothing emitted.
        let p2 = reb
            .on_window(&window(2000, &[(0, 0, 10), (2, 6, 0)]), &zones)
            .unwrap();
        assert_eq!(p2.moves, p1.moves);
        assert!(p2.changed.is_empty() && p2.withdrawn.is_empty());
        // Demand moves to b: the a->c move is withdrawn, a->b is new.
        let p3 = reb
            .on_window(&window(3000, &[(0, 0, 10), (1, 6, 0)]), &zones)
            .unwrap();
        assert!(p3.withdrawn.contains(&("a".into(), "c".into())), "{p3:?}");
        assert!(p3.changed.iter().all(|m| m.to_zone == "b"));
        // The warm plan is as good as a cold solve of the same problem.
        let cold =
            fleet_engine::optimize::optimize(reb.engine.as_ref().unwrap().problem()).unwrap();
        assert!((cold.plan.objective - p3.objective).abs() < 1e-6);
    }
}
