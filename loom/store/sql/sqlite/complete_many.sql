-- name: complete_many
-- See postgresql/complete_many.sql. SQLite names the columns of a VALUES list column1..column8
-- (id, status, finished_at, available_at, return_value, errors, attempt, unique_until); a CTE
-- would name them, but sqlite3 then reports no row count.
-- row: (%s, %s, %s, %s, %s, %s, %s, %s)
UPDATE loom_task
SET status = CASE WHEN v.column2 = 'READY' AND {superseded} THEN 'CANCELLED' ELSE v.column2 END,
    finished_at = CASE WHEN v.column2 = 'READY' AND {superseded}
                       THEN strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now') ELSE v.column3 END,
    available_at = COALESCE(v.column4, loom_task.available_at),
    return_value = v.column5,
    errors = v.column6,
    claimed_by = NULL,
    lease_expires_at = NULL,
    unique_until = v.column8
FROM (VALUES {rows}) AS v
WHERE loom_task.id = v.column1 AND loom_task.claimed_by = %s AND loom_task.status = 'RUNNING'
  AND loom_task.attempts = v.column7
