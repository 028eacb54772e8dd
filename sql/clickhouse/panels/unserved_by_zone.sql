-- Panel "Where demand goes unserved": the zones with the most unserved requests for one
-- fleet since a time, with their share of the zone's requests. Parameters: fleet, since, top.
SELECT zone,
       sum(requests_sum) AS requests,
       sum(unserved_sum) AS unserved,
       round(100 * sum(unserved_sum) / greatest(sum(requests_sum), 1), 1) AS unserved_pct
FROM zone_demand_hourly
WHERE fleet_id = {fleet:String} AND hour >= toStartOfHour({since:DateTime64(3, 'UTC')})
GROUP BY zone
HAVING unserved > 0
ORDER BY unserved DESC, zone
LIMIT {top:UInt32}
