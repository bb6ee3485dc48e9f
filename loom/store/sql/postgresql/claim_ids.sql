-- name: claim_ids
-- The flow claim's last step (loom.store.flow): claim the tasks it admitted, by id, unless
-- something changed them since it read them (a cancel, a debounce), and return them.
UPDATE ONLY loom_task
SET status = 'RUNNING',
    claimed_by = %(worker)s,
    lease_expires_at = %(lease)s,
    attempts = attempts + 1,
    started_at = COALESCE(started_at, %(now)s),
    last_attempted_at = %(now)s,
    worker_ids = worker_ids || to_jsonb(%(worker)s::text)
WHERE id IN ({ids}) AND status = 'READY'
RETURNING {columns}
