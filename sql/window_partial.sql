-- Run by the pipeline on every micro-batch of decoded telemetry (table `events`:
-- kind, entity_id, ts_ms, lat, lon, state). Produces partial window state:
--   * requests per slide bucket and zone (summed into windows when they close);
--   * each vehicle's last report per slide bucket (applied to the fleet's vehicle table
--     when the window ending after that bucket closes, so a window never sees later reports).
-- `${slide_ms}` is the window slide in ms (the pipeline substitutes an integer).
-- `zone_of(lat, lon)` is the zone UDF (pipeline/src/udf.rs): NULL outside every zone.
SELECT 'request' AS kind,
       (ts_ms / ${slide_ms}) * ${slide_ms} AS bucket_ms,
       zone_of(lat, lon) AS zone,
       CAST(NULL AS VARCHAR) AS entity_id,
       CAST(NULL AS VARCHAR) AS state,
       count(*) AS n,
       max(ts_ms) AS ts_ms
FROM events
WHERE kind = 'request'
GROUP BY (ts_ms / ${slide_ms}) * ${slide_ms}, zone_of(lat, lon)
UNION ALL
SELECT 'vehicle' AS kind,
       (ts_ms / ${slide_ms}) * ${slide_ms} AS bucket_ms,
       last_value(zone_of(lat, lon) ORDER BY ts_ms) AS zone,
       entity_id,
       last_value(state ORDER BY ts_ms) AS state,
       count(*) AS n,
       max(ts_ms) AS ts_ms
FROM events
WHERE kind = 'vehicle'
GROUP BY entity_id, (ts_ms / ${slide_ms}) * ${slide_ms}
