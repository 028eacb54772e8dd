-- Panel "Re-solve time": per hour, windows solved and solve time (mean, p99), for one
-- fleet since a time. Parameters: fleet, since.
SELECT hour,
       countMerge(windows) AS windows,
       round(avgMerge(solve_ms_avg), 3) AS mean_ms,
       round(quantileMerge(0.99)(solve_ms_p99), 3) AS p99_ms
FROM solves_hourly
WHERE fleet_id = {fleet:String} AND hour >= toStartOfHour({since:DateTime64(3, 'UTC')})
GROUP BY hour
ORDER BY hour
