//! The scalar functions the SQL in `sql/` calls, registered as DataFusion
//! UDFs. Their bodies are plain functions (`ZoneMap::zone_of`,
//! `fleet_engine::geo::haversine_km`), so the same code serves the Arroyo
//! plugin (`udf/arroyo`) without linking a second arrow.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, UInt64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{cast::as_float64_array, DataFusionError};
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};

use crate::zones::ZoneMap;

/// `zone_of(lat DOUBLE, lon DOUBLE) -> UBIGINT`: the zone key of a point,
/// NULL outside every zone.
pub fn zone_of_udf(zones: Arc<dyn ZoneMap>) -> ScalarUDF {
    create_udf(
        "zone_of",
        vec![DataType::Float64, DataType::Float64],
        DataType::UInt64,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let (lat, lon) = (as_float64_array(&arrays[0])?, as_float64_array(&arrays[1])?);
            let out: UInt64Array = (0..lat.len())
                .map(|i| {
                    if lat.is_null(i) || lon.is_null(i) {
                        None
                    } else {
                        zones.zone_of(lat.value(i), lon.value(i))
                    }
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
        }),
    )
}

/// `haversine_km(lat1, lon1, lat2, lon2) -> DOUBLE`: great-circle km.
pub fn haversine_udf() -> ScalarUDF {
    create_udf(
        "haversine_km",
        vec![DataType::Float64; 4],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let cols = arrays
                .iter()
                .map(|a| as_float64_array(a))
                .collect::<Result<Vec<&Float64Array>, DataFusionError>>()?;
            let out: Float64Array = (0..cols[0].len())
                .map(|i| {
                    if cols.iter().any(|c| c.is_null(i)) {
                        None
                    } else {
                        Some(fleet_engine::geo::haversine_km(
                            cols[0].value(i),
                            cols[1].value(i),
                            cols[2].value(i),
                            cols[3].value(i),
                        ))
                    }
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
        }),
    )
}
