-- name: cancelled
-- Ids of the tasks this worker runs that an operator asked to cancel.
SELECT id FROM loom_task
WHERE status = 'RUNNING' AND claimed_by = %(worker)s AND cancel_requested
