-- name: complete_many
-- See postgresql/complete_many.sql. MariaDB joins a derived table of UNION ALL rows instead.
-- row: SELECT %s AS id, %s AS status, %s AS finished_at, %s AS available_at, %s AS return_value, %s AS errors, %s AS attempt, %s AS unique_until
-- join: UNION ALL
UPDATE loom_task AS t
JOIN ({rows}) AS v ON t.id = v.id
SET t.finished_at = CASE WHEN v.status = 'READY' AND {superseded} THEN UTC_TIMESTAMP(6) ELSE v.finished_at END,
    t.status = CASE WHEN v.status = 'READY' AND {superseded} THEN 'CANCELLED' ELSE v.status END,
    t.available_at = COALESCE(v.available_at, t.available_at),
    t.return_value = v.return_value,
    t.errors = v.errors,
    t.claimed_by = NULL,
    t.lease_expires_at = NULL,
    t.unique_until = v.unique_until
WHERE t.claimed_by = %s AND t.status = 'RUNNING' AND t.attempts = v.attempt
