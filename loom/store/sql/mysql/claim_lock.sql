-- name: claim_lock
-- MariaDB has no UPDATE ... RETURNING: lock the due rows first (SKIP LOCKED), then claim_update.
SELECT id
FROM loom_task
WHERE status = 'READY' {queue_filter} AND available_at <= %(now)s
ORDER BY priority DESC, available_at, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
