-- A closed window expires the proposals its changed or dropped moves supersede, looked up
-- by run and move: without this index each lookup scans the run's recommendations.
CREATE INDEX IF NOT EXISTS optimization_recommendations_by_move
    ON optimization_recommendations (run_id, from_zone, to_zone);
