-- name: release
-- Puts claimed-but-unstarted rows back to READY as if the claim never happened, and wakes the
-- other workers (NOTIFY is delivered when this transaction commits). {where} names the rows:
-- the ids a stopping worker took back, or every row of this worker except those it holds (rows
-- whose claim reply was lost with a connection: they were never started).
WITH released AS (
    UPDATE ONLY loom_task
    SET status = CASE WHEN {superseded} THEN 'CANCELLED' ELSE 'READY' END,
        finished_at = CASE WHEN {superseded} THEN %(now)s ELSE NULL END,
        claimed_by = NULL,
        lease_expires_at = NULL,
        attempts = attempts - 1,
        started_at = CASE WHEN attempts = 1 THEN NULL ELSE started_at END,
        last_attempted_at = CASE WHEN attempts = 1 THEN NULL ELSE last_attempted_at END,
        worker_ids = worker_ids - (-1)
    WHERE claimed_by = %(worker)s AND status = 'RUNNING' AND {where}
    RETURNING queue_name
), woken AS (
    SELECT pg_notify('loom', queue_name) FROM (SELECT DISTINCT queue_name FROM released) AS q
)
SELECT count(*) FROM released, (SELECT count(*) FROM woken) AS w
