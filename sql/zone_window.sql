-- Run by the pipeline when a window closes. Tables:
--   window_requests(zone, n): request counts of the window's slide buckets;
--   vehicle_counts(zone, idle, soon_idle): the fleet's vehicles by zone at the watermark
--     (idle = last report `idle`; soon_idle = last report `occupied` or `repositioning`).
-- One row per zone with any request or vehicle. `unserved` = requests beyond the idle
-- vehicles there: demand the zone could not have met from its own supply.
SELECT coalesce(r.zone, v.zone) AS zone,
       coalesce(r.requests, 0) AS requests,
       coalesce(v.idle, 0) AS idle,
       coalesce(v.soon_idle, 0) AS soon_idle,
       greatest(coalesce(r.requests, 0) - coalesce(v.idle, 0), 0) AS unserved
FROM (SELECT zone, sum(n) AS requests FROM window_requests GROUP BY zone) AS r
FULL OUTER JOIN vehicle_counts AS v ON r.zone = v.zone
ORDER BY zone
