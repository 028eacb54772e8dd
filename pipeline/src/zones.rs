//! Zone assignment: which zone a point belongs to. Two kinds, behind one
//! trait: a zone file (the nearest centroid within a maximum distance) and
//! H3 cells at a chosen resolution. A zone is a `u64` key: the row of the
//! zone file, or the H3 cell index.

use std::path::Path;

use fleet_engine::geo::LatLon;
use fleet_engine::zone_raster::ZoneRaster;

/// A zone as the optimizer sees it: an id for people and a centre.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneInfo {
    pub id: String,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
}

/// Maps points to zones.
pub trait ZoneMap: Send + Sync + std::fmt::Debug {
    /// The zone of a point; `None` when it lies outside every zone.
    fn zone_of(&self, lat: f64, lon: f64) -> Option<u64>;
    /// What zone `key` is (`None` for a key this map never returns).
    fn describe(&self, key: u64) -> Option<ZoneInfo>;
    /// Every zone, when the set is fixed in advance (a zone file); `None`
    /// for open-ended maps (H3), whose zones appear as points arrive.
    fn all(&self) -> Option<Vec<u64>>;
}

/// Zones from a zone file: a point belongs to the nearest centroid within
/// `max_km` (DESIGN.md 3, `ZONE_MAX_KM`).
#[derive(Debug)]
pub struct CentroidZones {
    zones: Vec<ZoneInfo>,
    /// Answers every event's lookup (exactly the nearest-centroid rule).
    raster: ZoneRaster,
}

/// Default `ZONE_MAX_KM`: NYC's largest taxi zones are ~5 km across.
pub const DEFAULT_ZONE_MAX_KM: f64 = 5.0;

impl CentroidZones {
    pub fn new(zones: Vec<ZoneInfo>, max_km: f64) -> Result<Self, String> {
        if zones.is_empty() {
            return Err("no zones".into());
        }
        if !(max_km.is_finite() && max_km > 0.0) {
            return Err(format!(
                "ZONE_MAX_KM must be a positive number of km, not {max_km}"
            ));
        }
        let points: Vec<LatLon> = zones
            .iter()
            .map(|z| LatLon {
                lat: z.lat,
                lon: z.lon,
            })
            .collect();
        Ok(CentroidZones {
            raster: ZoneRaster::new(&points, max_km),
            zones,
        })
    }

    /// Reads a zone file: CSV with columns `zone_id,name,lat,lon`.
    pub fn from_file(path: &Path, max_km: f64) -> Result<Self, String> {
        let mut reader = csv::Reader::from_path(path).map_err(|e| {
            format!(
                "cannot read the zone file {}: {e}; set ZONES_FILE to a CSV with columns zone_id,name,lat,lon",
                path.display()
            )
        })?;
        let mut zones = Vec::new();
        for (row, record) in reader
            .deserialize::<(String, String, f64, f64)>()
            .enumerate()
        {
            let (id, name, lat, lon) =
                record.map_err(|e| format!("zone file {} row {}: {e}", path.display(), row + 2))?;
            if !(lat.is_finite() && lat.abs() <= 90.0 && lon.is_finite() && lon.abs() <= 180.0) {
                return Err(format!(
                    "zone file {} row {}: ({lat}, {lon}) is not a coordinate",
                    path.display(),
                    row + 2
                ));
            }
            zones.push(ZoneInfo { id, name, lat, lon });
        }
        Self::new(zones, max_km)
    }

    pub fn zones(&self) -> &[ZoneInfo] {
        &self.zones
    }
}

impl ZoneMap for CentroidZones {
    fn zone_of(&self, lat: f64, lon: f64) -> Option<u64> {
        self.raster.nearest(lat, lon).map(|i| i as u64)
    }

    fn describe(&self, key: u64) -> Option<ZoneInfo> {
        self.zones.get(usize::try_from(key).ok()?).cloned()
    }

    fn all(&self) -> Option<Vec<u64>> {
        Some((0..self.zones.len() as u64).collect())
    }
}

/// H3 cells at one resolution (0 = continents .. 15 = square metres; 8 is
/// ~0.7 km², a sensible rebalancing zone).
#[derive(Debug, Clone, Copy)]
pub struct H3Zones {
    resolution: h3o::Resolution,
}

impl H3Zones {
    pub fn new(resolution: u8) -> Result<Self, String> {
        let resolution = h3o::Resolution::try_from(resolution)
            .map_err(|_| format!("H3 resolution must be 0 to 15, not {resolution}"))?;
        Ok(H3Zones { resolution })
    }
}

impl ZoneMap for H3Zones {
    fn zone_of(&self, lat: f64, lon: f64) -> Option<u64> {
        if !(LatLon { lat, lon }).is_valid() {
            return None;
        }
        let point = h3o::LatLng::new(lat, lon).ok()?;
        Some(u64::from(point.to_cell(self.resolution)))
    }

    fn describe(&self, key: u64) -> Option<ZoneInfo> {
        let cell = h3o::CellIndex::try_from(key).ok()?;
        let centre = h3o::LatLng::from(cell);
        Some(ZoneInfo {
            id: cell.to_string(),
            name: format!("H3 cell {cell}"),
            lat: centre.lat(),
            lon: centre.lng(),
        })
    }

    fn all(&self) -> Option<Vec<u64>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nyc() -> CentroidZones {
        CentroidZones::from_file(
            Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../data/nyc/zones.csv"
            )),
            DEFAULT_ZONE_MAX_KM,
        )
        .unwrap()
    }

    #[test]
    fn points_go_to_the_nearest_centroid_within_reach() {
        let zones = nyc();
        assert_eq!(zones.zones().len(), 260);
        // Every centroid is its own zone.
        for (i, z) in zones.zones().iter().enumerate() {
            let got = zones.zone_of(z.lat, z.lon).unwrap();
            let d = |k: u64| {
                let o = zones.describe(k).unwrap();
                fleet_engine::geo::haversine_km(z.lat, z.lon, o.lat, o.lon)
            };
            assert!(got == i as u64 || d(got) < 1e-9, "{}", z.name);
        }
        // Times Square is in Midtown; the middle of the Atlantic is nowhere.
        let ts = zones
            .describe(zones.zone_of(40.758, -73.9855).unwrap())
            .unwrap();
        assert!(
            ts.name.contains("Midtown") || ts.name.contains("Times Sq"),
            "{}",
            ts.name
        );
        assert_eq!(zones.zone_of(38.0, -60.0), None);
        assert_eq!(zones.zone_of(f64::NAN, 0.0), None);
    }

    #[test]
    fn h3_cells_are_stable_keys_with_centres_inside() {
        let h3 = H3Zones::new(8).unwrap();
        let a = h3.zone_of(40.758, -73.9855).unwrap();
        assert_eq!(h3.zone_of(40.7581, -73.9856), Some(a));
        let info = h3.describe(a).unwrap();
        assert_eq!(h3.zone_of(info.lat, info.lon), Some(a));
        assert!(fleet_engine::geo::haversine_km(info.lat, info.lon, 40.758, -73.9855) < 1.0);
        assert!(H3Zones::new(16).is_err());
        assert_eq!(h3.zone_of(95.0, 0.0), None);
    }
}
