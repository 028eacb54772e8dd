//! `zone_of(lat, lon)`: the zone of a point, as an Arroyo UDF: the row of
//! the zone file (compiled in: `data/nyc/zones.csv`) whose centroid is
//! nearest within 5 km (`ZONE_MAX_KM`'s default), NULL outside every zone.
//! The search is `fleet_engine::geo::PointIndex::nearest`, the code the
//! service's DataFusion UDF runs (through `pipeline::zones::CentroidZones`),
//! so both engines assign every point to the same zone.

use std::sync::OnceLock;

use arroyo_udf_plugin::udf;
use fleet_engine::geo::{LatLon, PointIndex};

const ZONE_FILE: &str = include_str!("../../../../data/nyc/zones.csv");
const MAX_KM: f64 = 5.0;

/// Centroids of the zone file's rows (`zone_id,name,lat,lon`; names may be quoted).
fn centroids(text: &str) -> Vec<LatLon> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.rsplitn(3, ',');
            let lon = fields.next()?.trim().parse().ok()?;
            let lat = fields.next()?.trim().parse().ok()?;
            Some(LatLon { lat, lon })
        })
        .collect()
}

fn index() -> &'static PointIndex {
    static INDEX: OnceLock<PointIndex> = OnceLock::new();
    INDEX.get_or_init(|| PointIndex::new(&centroids(ZONE_FILE)))
}

#[udf]
pub fn zone_of(lat: f64, lon: f64) -> Option<u64> {
    let p = LatLon { lat, lon };
    if !p.is_valid() {
        return None;
    }
    index().nearest(p, MAX_KM).map(|(i, _)| i as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_zone_file_row_is_read_and_points_find_their_zone() {
        let points = centroids(ZONE_FILE);
        assert_eq!(points.len(), 260);
        for (i, p) in points.iter().enumerate() {
            let z = zone_of(p.lat, p.lon).unwrap() as usize;
            assert!(z == i || fleet_engine::geo::haversine_km(p.lat, p.lon, points[z].lat, points[z].lon) < 1e-9);
        }
        // Times Square lies in midtown.
        let row = ZONE_FILE.lines().nth(1 + zone_of(40.758, -73.9855).unwrap() as usize).unwrap();
        assert!(row.contains("Times Sq") || row.contains("Midtown"), "{row}");
        assert_eq!(zone_of(38.0, -60.0), None);
        assert_eq!(zone_of(f64::NAN, 0.0), None);
    }
}
