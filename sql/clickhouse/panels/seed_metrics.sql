-- Panel "The five seed metrics": per day and metric, the mean and latest value of
-- optimization_success (as a rate), optimization_execution_time_ms, cost_reduction_pct,
-- fleet_efficiency_improvement_pct and recommendation_adoption_rate_pct, for one fleet
-- since a time. Parameters: fleet, since.
SELECT toStartOfDay(ts) AS day,
       name,
       count() AS points,
       round(avg(value), 3) AS mean,
       round(argMax(value, ts), 3) AS latest
FROM metrics
WHERE fleet_id = {fleet:String} AND ts >= {since:DateTime64(3, 'UTC')}
  AND name IN ('optimization_success', 'optimization_execution_time_ms', 'cost_reduction_pct',
               'fleet_efficiency_improvement_pct', 'recommendation_adoption_rate_pct')
GROUP BY day, name
ORDER BY day, name
