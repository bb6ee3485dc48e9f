-- name: release
-- See postgresql/release.sql.
UPDATE loom_task
SET status = CASE WHEN {superseded} THEN 'CANCELLED' ELSE 'READY' END,
    finished_at = CASE WHEN {superseded} THEN %(now)s ELSE NULL END,
    claimed_by = NULL,
    lease_expires_at = NULL,
    attempts = attempts - 1,
    started_at = CASE WHEN attempts = 1 THEN NULL ELSE started_at END,
    last_attempted_at = CASE WHEN attempts = 1 THEN NULL ELSE last_attempted_at END,
    worker_ids = json_remove(worker_ids, '$[#-1]')
WHERE claimed_by = %(worker)s AND status = 'RUNNING' AND {where}
