-- name: claim
-- Claims up to %(limit)s due READY rows for one worker in one statement and returns what the
-- worker needs to run them: one round trip, and the rows the worker acts on are the rows the
-- statement changed (never a second read that a dropped connection could lose).
-- The CTE is an optimisation fence: the planner cannot update more rows than the LIMIT picked,
-- and SKIP LOCKED lets many workers claim side by side without waiting on each other.
-- Tasks under flow control (a concurrency or fair key) are claimed by flow_claim instead; leaving
-- them out here lets the planner read the claim index, which holds only the others.
-- Appending to worker_ids here (not at completion) makes context.attempt 1 on the first run and
-- keeps the count right even when the worker dies mid-run.
WITH due AS (
    SELECT id AS due_id
    FROM ONLY loom_task
    WHERE status = 'READY' AND concurrency_key IS NULL AND fair_key IS NULL {queue_filter}
      AND available_at <= %(now)s
    ORDER BY priority DESC, available_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE ONLY loom_task
SET status = 'RUNNING',
    claimed_by = %(worker)s,
    lease_expires_at = %(lease)s,
    attempts = attempts + 1,
    started_at = COALESCE(started_at, %(now)s),
    last_attempted_at = %(now)s,
    worker_ids = worker_ids || to_jsonb(%(worker)s::text)
FROM due
WHERE id = due_id
RETURNING {columns}
