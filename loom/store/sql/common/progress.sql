-- name: progress
-- Records progress reported by a running task (callers throttle how often).
UPDATE loom_task
SET progress_current = %(current)s,
    progress_total = %(total)s,
    progress_message = %(message)s,
    progress_at = %(at)s
WHERE id = %(id)s AND status = 'RUNNING'
