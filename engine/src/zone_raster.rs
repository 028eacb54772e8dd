//! "Which zone centre is nearest to this point, if any is within reach?"
//! answered in a few nanoseconds: the question the telemetry pipeline asks
//! of every event.
//!
//! [`ZoneRaster`] lays a latitude/longitude grid over the centres (plus the
//! reach) and remembers, per cell, the only centres that can be the answer
//! anywhere in that cell. With `r` the cell's radius (largest distance from
//! its middle `m` to a point of it) and `c0` the centre nearest to `m` at
//! `d0`, a centre `c` with `d(m, c) > d0 + 2r` is farther than `c0` from every
//! point `p` of the cell (triangle inequality: `d(p, c) >= d(m, c) - r >
//! d0 + r >= d(p, c0)`), so the candidates are the centres within `d0 + 2r`
//! of `m`. Most cells have exactly one: the answer is then that centre
//! (when the whole cell is within reach) or that centre after one distance
//! check. Cells with several candidates compare their haversine distances,
//! the same computation as [`PointIndex::nearest`], so answers are
//! identical to it, ties included (smaller index wins).
//!
//! Cells are built lazily, a tile of 16 x 16 at a time, on first use: a
//! city's raster costs nothing until points arrive, and only the tiles
//! traffic touches are ever built. Sets near the poles or across the
//! antimeridian get no raster and every query goes to the [`PointIndex`].

use std::sync::OnceLock;

use crate::geo::{dist, h_of, LatLon, PointIndex, EARTH_RADIUS_KM};

/// Cells per tile side.
const TILE: usize = 16;
/// Most cells a raster has (4 bytes each once built).
const MAX_CELLS: f64 = (1 << 22) as f64;
/// Cells per centre the raster aims for (finer = fewer multi-candidate cells).
const CELLS_PER_POINT: f64 = 1024.0;
/// Relative and absolute margins (km) on bounds, far above rounding error.
const REL: f64 = 1e-6;
const ABS_KM: f64 = 1e-6;

const NONE: u32 = 0;
const TAG_SHIFT: u32 = 30;
const WITHIN: u32 = 1; // the one candidate, whole cell within reach
const CHECK: u32 = 2; // the one candidate, if within reach
const SEVERAL: u32 = 3; // payload: offset of [count, ids...] in the tile's list
const PAYLOAD: u32 = (1 << TAG_SHIFT) - 1;

/// Nearest centre within `max_km`, exactly as [`PointIndex::nearest`]
/// answers it, from a lazily built raster.
///
/// ```
/// use fleet_engine::geo::LatLon;
/// use fleet_engine::zone_raster::ZoneRaster;
///
/// let centres = [LatLon { lat: 40.75, lon: -73.99 }, LatLon { lat: 40.70, lon: -74.01 }];
/// let raster = ZoneRaster::new(&centres, 5.0);
/// assert_eq!(raster.nearest(40.751, -73.985), Some(0));
/// assert_eq!(raster.nearest(40.69, -74.02), Some(1));
/// assert_eq!(raster.nearest(41.5, -73.0), None); // beyond 5 km of both
/// ```
#[derive(Debug)]
pub struct ZoneRaster {
    index: PointIndex,
    /// Per centre: latitude and longitude in radians, cosine of latitude.
    centres: Vec<[f64; 3]>,
    max_km: f64,
    grid: Option<Grid>,
}

#[derive(Debug)]
struct Grid {
    /// South-west corner of the grid, degrees.
    lat0: f64,
    lon0: f64,
    /// Cell side, degrees.
    dlat: f64,
    dlon: f64,
    nx: usize,
    ny: usize,
    tiles_x: usize,
    tiles: Vec<OnceLock<Tile>>,
}

#[derive(Debug)]
struct Tile {
    cells: Box<[u32]>,
    lists: Box<[u32]>,
}

impl ZoneRaster {
    /// A raster over `centres` answering "nearest within `max_km`".
    /// Invalid `max_km` (NaN, negative) answers `None` everywhere.
    pub fn new(centres: &[LatLon], max_km: f64) -> ZoneRaster {
        let grid = Grid::plan(centres, max_km);
        ZoneRaster {
            index: PointIndex::new(centres),
            centres: centres.iter().map(|&p| query(p)).collect(),
            max_km,
            grid,
        }
    }

    /// The centre nearest to (`lat`, `lon`) within `max_km` (inclusive); ties
    /// go to the smaller index. `None` for invalid coordinates.
    #[inline]
    pub fn nearest(&self, lat: f64, lon: f64) -> Option<usize> {
        let p = LatLon { lat, lon };
        if !p.is_valid() {
            return None;
        }
        // No grid also for an invalid `max_km`: the index answers `None`.
        let Some(g) = &self.grid else {
            return self.index.nearest(p, self.max_km).map(|(i, _)| i);
        };
        let (fy, fx) = ((lat - g.lat0) / g.dlat, (lon - g.lon0) / g.dlon);
        // Outside the grid means beyond reach of every centre (see `plan`).
        if !(fy >= 0.0 && fx >= 0.0 && fy < g.ny as f64 && fx < g.nx as f64) {
            return None;
        }
        let (x, y) = (fx as usize, fy as usize);
        let t = (y / TILE) * g.tiles_x + x / TILE;
        let tile = g.tiles[t].get_or_init(|| self.build_tile(g, t));
        let entry = tile.cells[(y % TILE) * TILE + x % TILE];
        let payload = (entry & PAYLOAD) as usize;
        match entry >> TAG_SHIFT {
            WITHIN => Some(payload),
            CHECK => {
                let q = query(p);
                (self.distance(&q, payload) <= self.max_km).then_some(payload)
            }
            SEVERAL => {
                let q = query(p);
                let n = tile.lists[payload] as usize;
                let mut best: Option<(usize, f64)> = None;
                for &c in &tile.lists[payload + 1..payload + 1 + n] {
                    let (c, d) = (c as usize, self.distance(&q, c as usize));
                    // Candidates are in index order: strict `<` keeps the smaller on ties.
                    if d <= self.max_km && best.is_none_or(|(_, bd)| d < bd) {
                        best = Some((c, d));
                    }
                }
                best.map(|(c, _)| c)
            }
            _ => None,
        }
    }

    #[inline]
    fn distance(&self, q: &[f64; 3], c: usize) -> f64 {
        let o = &self.centres[c];
        dist(q[0], q[1], q[2], o[0], o[1], o[2])
    }

    /// Whether points get the raster (false: near a pole, across the
    /// antimeridian, or too many centres, where every query uses the index).
    pub fn has_grid(&self) -> bool {
        self.grid.is_some()
    }

    fn build_tile(&self, g: &Grid, t: usize) -> Tile {
        let (tx, ty) = (t % g.tiles_x, t / g.tiles_x);
        let mut cells = vec![NONE; TILE * TILE].into_boxed_slice();
        let mut lists = Vec::new();
        for dy in 0..TILE {
            for dx in 0..TILE {
                let (x, y) = (tx * TILE + dx, ty * TILE + dy);
                if x < g.nx && y < g.ny {
                    cells[dy * TILE + dx] = self.cell(g, x, y, &mut lists);
                }
            }
        }
        Tile {
            cells,
            lists: lists.into_boxed_slice(),
        }
    }

    /// The entry of cell (`x`, `y`) (see the module docs).
    fn cell(&self, g: &Grid, x: usize, y: usize, lists: &mut Vec<u32>) -> u32 {
        let (south, west) = (g.lat0 + y as f64 * g.dlat, g.lon0 + x as f64 * g.dlon);
        let mid = LatLon {
            lat: south + g.dlat / 2.0,
            lon: west + g.dlon / 2.0,
        };
        // Farthest point of a small latitude/longitude rectangle from its
        // middle: a corner (distance grows with |dlon| along parallels and is
        // convex along meridians); the edge middles are checked too.
        let mut r: f64 = 0.0;
        for (fy, fx) in [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)]
            .into_iter()
            .chain([(0.5, 0.0), (0.5, 1.0), (0.0, 0.5), (1.0, 0.5)])
        {
            let corner = (south + fy * g.dlat, west + fx * g.dlon);
            r = r.max(crate::geo::haversine_km(
                mid.lat, mid.lon, corner.0, corner.1,
            ));
        }
        let r = r * (1.0 + REL) + ABS_KM;
        let Some((_, d0)) = self.index.nearest(mid, self.max_km + r) else {
            return NONE; // every point of the cell is beyond reach
        };
        let candidates = self
            .index
            .within(mid, (d0 + 2.0 * r) * (1.0 + REL) + ABS_KM);
        match candidates.as_slice() {
            [only] if d0 + r <= self.max_km * (1.0 - REL) - ABS_KM => {
                WITHIN << TAG_SHIFT | *only as u32
            }
            [only] => CHECK << TAG_SHIFT | *only as u32,
            several => {
                let offset = lists.len() as u32;
                lists.push(several.len() as u32);
                lists.extend(several.iter().map(|&c| c as u32));
                SEVERAL << TAG_SHIFT | offset
            }
        }
    }
}

/// A point in the form the distance needs (radians, cosine of latitude).
#[inline]
fn query(p: LatLon) -> [f64; 3] {
    let lat = p.lat.to_radians();
    [lat, p.lon.to_radians(), lat.cos()]
}

impl Grid {
    /// The grid over the centres' bounding box grown by the reach, so that a
    /// point outside it is provably beyond reach of every centre; `None`
    /// where that box is not a plain rectangle (poles, antimeridian) or the
    /// set does not fit the encoding.
    fn plan(centres: &[LatLon], max_km: f64) -> Option<Grid> {
        if centres.is_empty()
            || centres.len() >= PAYLOAD as usize
            || !(max_km.is_finite() && max_km >= 0.0)
            || !centres.iter().all(LatLon::is_valid)
        {
            return None;
        }
        let (mut s, mut n, mut w, mut e) = (90.0f64, -90.0f64, 180.0f64, -180.0f64);
        for p in centres {
            (s, n, w, e) = (s.min(p.lat), n.max(p.lat), w.min(p.lon), e.max(p.lon));
        }
        // Latitude: |dlat| >= m_lat alone puts a point beyond reach.
        let km_per_degree = EARTH_RADIUS_KM * std::f64::consts::PI / 180.0;
        let m_lat = max_km / km_per_degree * (1.0 + 1e-3) + 1e-6;
        let (s, n) = (s - m_lat, n + m_lat);
        if s < -80.0 || n > 80.0 {
            return None;
        }
        // Longitude: with both latitudes in [s, n], h >= c² sin²(dlon / 2)
        // where c = cos of the most poleward latitude; beyond m_lon that
        // exceeds the reach's h.
        let c = s.abs().max(n.abs()).to_radians().cos();
        let arg = (h_of(max_km) * (1.0 + 1e-3)).sqrt() / c;
        if arg >= 1.0 {
            return None;
        }
        let m_lon = 2.0 * arg.asin().to_degrees() + 1e-6;
        let (w, e) = (w - m_lon, e + m_lon);
        if w <= -180.0 || e >= 180.0 {
            return None;
        }
        // Roughly square cells (in km), CELLS_PER_POINT per centre, capped.
        let cells = (centres.len() as f64 * CELLS_PER_POINT).clamp(65_536.0, MAX_CELLS);
        let mid_cos = ((s + n) / 2.0).to_radians().cos();
        let area = (n - s) * (e - w) * mid_cos; // square degrees of latitude
        let dlat = (area / cells).sqrt().max(1e-9);
        let dlon = dlat / mid_cos;
        let (nx, ny) = (
            ((e - w) / dlon).ceil() as usize,
            ((n - s) / dlat).ceil() as usize,
        );
        let (nx, ny) = (nx.max(1), ny.max(1));
        let tiles_x = nx.div_ceil(TILE);
        let tiles = (0..tiles_x * ny.div_ceil(TILE))
            .map(|_| OnceLock::new())
            .collect();
        Some(Grid {
            lat0: s,
            lon0: w,
            dlat,
            dlon,
            nx,
            ny,
            tiles_x,
            tiles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::Rng;

    fn random_set(rng: &mut Rng, n: usize, b: [f64; 4]) -> Vec<LatLon> {
        (0..n)
            .map(|_| LatLon {
                lat: b[0] + (b[1] - b[0]) * rng.unit(),
                lon: b[2] + (b[3] - b[2]) * rng.unit(),
            })
            .collect()
    }

    /// The raster answers exactly what the index answers: on random points,
    /// on points midway between two centres (where ties and near-ties live)
    /// and on points at the reach's edge; with and without a grid.
    #[test]
    fn answers_exactly_what_the_index_answers() {
        let mut rng = Rng::new(7);
        let boxes = [
            ([40.5, 40.9, -74.1, -73.7], 5.0),    // a city
            ([40.5, 40.9, -74.1, -73.7], 0.3),    // small reach: many gaps
            ([51.0, 51.01, -0.01, 0.0], 50.0),    // tiny set, huge reach
            ([-10.0, 10.0, 170.0, 179.9], 300.0), // no grid: antimeridian
            ([75.0, 79.0, 0.0, 10.0], 200.0),     // no grid: pole
        ];
        for (b, reach) in boxes {
            for n in [1, 2, 30, 400] {
                let centres = random_set(&mut rng, n, b);
                let raster = ZoneRaster::new(&centres, reach);
                let index = PointIndex::new(&centres);
                let grow = [b[0] - 0.2, b[1] + 0.2, b[2] - 0.2, b[3] + 0.2];
                let mut queries = random_set(&mut rng, 4000, grow);
                for k in 0..centres.len().min(50) {
                    let (a, c) = (centres[k], centres[(k * 7 + 1) % centres.len()]);
                    queries.push(LatLon {
                        lat: (a.lat + c.lat) / 2.0,
                        lon: (a.lon + c.lon) / 2.0,
                    });
                    queries.push(a);
                }
                for q in queries.into_iter().filter(LatLon::is_valid) {
                    let want = index.nearest(q, reach).map(|(i, _)| i);
                    assert_eq!(raster.nearest(q.lat, q.lon), want, "{q:?} in {b:?}, n {n}");
                }
            }
        }
        let centres = random_set(&mut rng, 10, boxes[0].0);
        assert!(ZoneRaster::new(&centres, 5.0).has_grid());
        assert!(!ZoneRaster::new(&centres[..1], 1e5).has_grid());
    }

    #[test]
    fn invalid_input_is_nowhere() {
        let raster = ZoneRaster::new(&[LatLon { lat: 0.0, lon: 0.0 }], 10.0);
        for (lat, lon) in [
            (f64::NAN, 0.0),
            (0.0, f64::INFINITY),
            (91.0, 0.0),
            (0.0, -181.0),
        ] {
            assert_eq!(raster.nearest(lat, lon), None);
        }
        assert_eq!(raster.nearest(0.0, 0.0), Some(0));
        assert_eq!(
            ZoneRaster::new(&[LatLon { lat: 0.0, lon: 0.0 }], f64::NAN).nearest(0.0, 0.0),
            None
        );
        assert_eq!(ZoneRaster::new(&[], 10.0).nearest(0.0, 0.0), None);
    }
}
