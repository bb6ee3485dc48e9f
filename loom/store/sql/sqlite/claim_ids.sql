-- name: claim_ids
-- See postgresql/claim_ids.sql.
UPDATE loom_task
SET status = 'RUNNING',
    claimed_by = %(worker)s,
    lease_expires_at = %(lease)s,
    attempts = attempts + 1,
    started_at = COALESCE(started_at, %(now)s),
    last_attempted_at = %(now)s,
    worker_ids = json_insert(worker_ids, '$[#]', %(worker)s)
WHERE id IN ({ids}) AND status = 'READY'
RETURNING {columns}
