//! `haversine_km(lat1, lon1, lat2, lon2)`: great-circle km, as an Arroyo UDF.
//! The body is `fleet_engine::geo::haversine_km`, which the service's
//! DataFusion UDF of the same name also calls.

use arroyo_udf_plugin::udf;

#[udf]
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    fleet_engine::geo::haversine_km(lat1, lon1, lat2, lon2)
}

#[cfg(test)]
mod tests {
    #[test]
    fn equals_the_engine_bit_for_bit() {
        let (a, b) = ((40.758, -73.9855), (40.6413, -73.7781));
        let got = super::haversine_km(a.0, a.1, b.0, b.1);
        assert_eq!(got.to_bits(), fleet_engine::geo::haversine_km(a.0, a.1, b.0, b.1).to_bits());
        assert!((got - 21.8).abs() < 0.5, "{got}");
    }
}
