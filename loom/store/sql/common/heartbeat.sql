-- name: heartbeat
-- Renews the lease of every task this worker is running.
UPDATE loom_task
SET lease_expires_at = %(lease)s
WHERE claimed_by = %(worker)s AND status = 'RUNNING'
