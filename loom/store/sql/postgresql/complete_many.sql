-- name: complete_many
-- Writes a batch of outcomes in one statement. The guard (still RUNNING, claimed by the writing
-- worker, same attempt) fences a run whose lease was lost: once its task was rescued (and maybe
-- claimed again, even by this worker), the late outcome changes nothing.
-- The batch arrives as seven array literals, one per column (Store._array): a statement of fixed
-- text whose few parameters cost nothing to bind, where a VALUES list of 7 x N placeholders cost
-- three times as much in the client. JSON travels as text and is stored verbatim.
UPDATE loom_task AS t
SET status = v.status,
    finished_at = v.finished_at,
    available_at = COALESCE(v.available_at, t.available_at),
    return_value = v.return_value,
    errors = v.errors,
    claimed_by = NULL,
    lease_expires_at = NULL
FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::json[], %s::json[], %s::int[])
     AS v(id, status, finished_at, available_at, return_value, errors, attempt)
WHERE t.id = v.id AND t.claimed_by = %s AND t.status = 'RUNNING' AND t.attempts = v.attempt
