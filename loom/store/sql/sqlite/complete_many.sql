-- name: complete_many
-- See postgresql/complete_many.sql. SQLite names VALUES columns column1..N, hence the CTE.
-- row: (%s, %s, %s, %s, %s, %s, %s)
WITH v(id, status, finished_at, available_at, return_value, errors, attempt) AS (VALUES {rows})
UPDATE loom_task
SET status = v.status,
    finished_at = v.finished_at,
    available_at = COALESCE(v.available_at, loom_task.available_at),
    return_value = v.return_value,
    errors = v.errors,
    claimed_by = NULL,
    lease_expires_at = NULL
FROM v
WHERE loom_task.id = v.id AND loom_task.claimed_by = %s AND loom_task.status = 'RUNNING'
  AND loom_task.attempts = v.attempt
