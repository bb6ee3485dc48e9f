-- name: claim_ids
-- See postgresql/claim_ids.sql. MariaDB has no UPDATE ... RETURNING: the Store reads the rows
-- back in the same transaction. ({columns} is unused here.)
UPDATE loom_task
SET status = 'RUNNING',
    claimed_by = %(worker)s,
    lease_expires_at = %(lease)s,
    attempts = attempts + 1,
    started_at = COALESCE(started_at, %(now)s),
    last_attempted_at = %(now)s,
    worker_ids = JSON_ARRAY_APPEND(worker_ids, '$', %(worker)s)
WHERE id IN ({ids}) AND status = 'READY'
