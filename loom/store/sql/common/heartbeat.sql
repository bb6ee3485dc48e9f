-- name: heartbeat
-- Renews the lease of the tasks this worker really holds ({ids}: claimed and not yet written).
-- Only those: a row the worker claimed but never learned of (the claim's reply was lost with its
-- connection) keeps its old lease, which expires, and the rescuer puts it back.
UPDATE loom_task
SET lease_expires_at = %(lease)s
WHERE claimed_by = %(worker)s AND status = 'RUNNING' AND id IN ({ids})
