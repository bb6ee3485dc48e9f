-- name: complete_many
-- Writes a batch of outcomes in one statement. The guard (still RUNNING, claimed by the writing
-- worker, same attempt) fences a run whose lease was lost: once its task was rescued (and maybe
-- claimed again, even by this worker), the late outcome changes nothing. A retry of a debounced
-- task (replace=True) whose key a newer waiting task holds ends CANCELLED instead ({superseded}).
-- The batch arrives as eight array literals, one per column (Store._array): a statement of fixed
-- text whose few parameters cost nothing to bind, where a VALUES list of 7 x N placeholders cost
-- three times as much in the client. JSON travels as text and is stored verbatim.
UPDATE ONLY loom_task AS t
SET status = CASE WHEN v.status = 'READY' AND {superseded} THEN 'CANCELLED' ELSE v.status END,
    finished_at = CASE WHEN v.status = 'READY' AND {superseded} THEN now() ELSE v.finished_at END,
    available_at = COALESCE(v.available_at, t.available_at),
    return_value = v.return_value,
    errors = v.errors,
    claimed_by = NULL,
    lease_expires_at = NULL,
    unique_until = v.unique_until
FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::json[], %s::json[], %s::int[],
            %s::timestamptz[])
     AS v(id, status, finished_at, available_at, return_value, errors, attempt, unique_until)
WHERE t.id = v.id AND t.claimed_by = %s AND t.status = 'RUNNING' AND t.attempts = v.attempt
