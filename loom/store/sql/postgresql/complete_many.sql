-- name: complete_many
-- Writes a batch of outcomes in one statement. The claimed_by/RUNNING guard means a worker whose
-- lease was lost (and whose task was rescued and claimed again) cannot overwrite the new run.
-- row: (%s::uuid, %s, %s::timestamptz, %s::timestamptz, %s::jsonb, %s::jsonb)
UPDATE loom_task AS t
SET status = v.status,
    finished_at = v.finished_at,
    available_at = COALESCE(v.available_at, t.available_at),
    return_value = v.return_value,
    errors = v.errors,
    claimed_by = NULL,
    lease_expires_at = NULL
FROM (VALUES {rows}) AS v(id, status, finished_at, available_at, return_value, errors)
WHERE t.id = v.id AND t.claimed_by = %s AND t.status = 'RUNNING'
