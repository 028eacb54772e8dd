-- Panel "Empty km and unmet demand": per hour, the planned repositioning km and the unmet
-- requests the plans leave, for one fleet since a time. Parameters: fleet, since.
SELECT hour,
       round(sumMerge(empty_km_sum), 3) AS empty_km,
       sumMerge(unmet_sum) AS unmet
FROM solves_hourly
WHERE fleet_id = {fleet:String} AND hour >= toStartOfHour({since:DateTime64(3, 'UTC')})
GROUP BY hour
ORDER BY hour
