-- name: claim
-- One UPDATE ... RETURNING in autocommit: SQLite takes the write lock for the whole statement,
-- so the inner SELECT and the UPDATE are atomic (the equivalent of BEGIN IMMEDIATE), and the
-- worker runs exactly the rows the statement returned (see postgresql/claim.sql).
-- INDEXED BY: without statistics SQLite's planner prefers the (status, finished_at) index and
-- sorts every READY row on each claim; the partial claim index gives the rows in claim order.
UPDATE loom_task
SET status = 'RUNNING',
    claimed_by = %(worker)s,
    lease_expires_at = %(lease)s,
    attempts = attempts + 1,
    started_at = COALESCE(started_at, %(now)s),
    last_attempted_at = %(now)s,
    worker_ids = json_insert(worker_ids, '$[#]', %(worker)s)
WHERE id IN (
    SELECT id
    FROM loom_task INDEXED BY loom_task_claim
    WHERE status = 'READY' AND concurrency_key IS NULL AND fair_key IS NULL {queue_filter}
      AND available_at <= %(now)s
    ORDER BY priority DESC, available_at, id
    LIMIT %(limit)s
)
RETURNING {columns}
