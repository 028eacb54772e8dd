-- Panel "Recommendation adoption": per day, moves recommended and how many operators
-- accepted, rejected or let expire, for one fleet since a time. Parameters: fleet, since.
SELECT day,
       sum(n_recommended) AS recommended,
       sum(n_accepted) AS accepted,
       sum(n_rejected) AS rejected,
       sum(n_expired) AS expired,
       round(100 * sum(n_accepted) / greatest(sum(n_recommended), 1), 1) AS adoption_pct
FROM (
    SELECT toStartOfDay(window_end) AS day, count() AS n_recommended,
           0 AS n_accepted, 0 AS n_rejected, 0 AS n_expired
    FROM recommendations FINAL
    WHERE fleet_id = {fleet:String} AND window_end >= {since:DateTime64(3, 'UTC')}
    GROUP BY day
    UNION ALL
    SELECT toStartOfDay(at) AS day, 0 AS n_recommended,
           countIf(status = 'accepted') AS n_accepted, countIf(status = 'rejected') AS n_rejected,
           countIf(status = 'expired') AS n_expired
    FROM recommendation_outcomes FINAL
    WHERE fleet_id = {fleet:String} AND at >= {since:DateTime64(3, 'UTC')}
    GROUP BY day
)
GROUP BY day
ORDER BY day
