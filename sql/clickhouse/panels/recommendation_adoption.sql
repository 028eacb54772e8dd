-- Panel "Recommendation adoption": per day, moves recommended and how many operators
-- accepted, rejected or let expire, for one fleet since a time. Parameters: fleet, since.
SELECT day,
       sum(recommended) AS recommended,
       sum(accepted) AS accepted,
       sum(rejected) AS rejected,
       sum(expired) AS expired,
       round(100 * sum(accepted) / greatest(sum(recommended), 1), 1) AS adoption_pct
FROM (
    SELECT toStartOfDay(window_end) AS day, count() AS recommended,
           0 AS accepted, 0 AS rejected, 0 AS expired
    FROM recommendations FINAL
    WHERE fleet_id = {fleet:String} AND window_end >= {since:DateTime64(3, 'UTC')}
    GROUP BY day
    UNION ALL
    SELECT toStartOfDay(at) AS day, 0,
           countIf(status = 'accepted'), countIf(status = 'rejected'), countIf(status = 'expired')
    FROM recommendation_outcomes FINAL
    WHERE fleet_id = {fleet:String} AND at >= {since:DateTime64(3, 'UTC')}
    GROUP BY day
)
GROUP BY day
ORDER BY day
