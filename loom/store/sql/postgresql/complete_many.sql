-- name: complete_many
-- Writes a batch of outcomes in one statement. The guard (still RUNNING, claimed by the writing
-- worker, same attempt) fences a run whose lease was lost: once its task was rescued (and maybe
-- claimed again, even by this worker), the late outcome changes nothing.
-- row: (%s::uuid, %s, %s::timestamptz, %s::timestamptz, %s::json, %s::json, %s::int)
UPDATE loom_task AS t
SET status = v.status,
    finished_at = v.finished_at,
    available_at = COALESCE(v.available_at, t.available_at),
    return_value = v.return_value,
    errors = v.errors,
    claimed_by = NULL,
    lease_expires_at = NULL
FROM (VALUES {rows}) AS v(id, status, finished_at, available_at, return_value, errors, attempt)
WHERE t.id = v.id AND t.claimed_by = %s AND t.status = 'RUNNING' AND t.attempts = v.attempt
