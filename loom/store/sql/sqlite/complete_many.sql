-- name: complete_many
-- See postgresql/complete_many.sql. SQLite names the columns of a VALUES list column1..column7
-- (id, status, finished_at, available_at, return_value, errors, attempt); a CTE would name them,
-- but sqlite3 then reports no row count.
-- row: (%s, %s, %s, %s, %s, %s, %s)
UPDATE loom_task
SET status = v.column2,
    finished_at = v.column3,
    available_at = COALESCE(v.column4, loom_task.available_at),
    return_value = v.column5,
    errors = v.column6,
    claimed_by = NULL,
    lease_expires_at = NULL
FROM (VALUES {rows}) AS v
WHERE loom_task.id = v.column1 AND loom_task.claimed_by = %s AND loom_task.status = 'RUNNING'
  AND loom_task.attempts = v.column7
