-- name: claim_lock
-- MariaDB has no UPDATE ... RETURNING: lock the due rows first (SKIP LOCKED) and read what the
-- worker needs, then claim them (claim.sql) in the same transaction. The Store applies the
-- claim's changes (attempts + 1, started_at, worker_ids) to the rows it read.
SELECT {columns}
FROM loom_task
WHERE status = 'READY' AND concurrency_key IS NULL AND fair_key IS NULL {queue_filter}
      AND available_at <= %(now)s
ORDER BY priority DESC, available_at, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
