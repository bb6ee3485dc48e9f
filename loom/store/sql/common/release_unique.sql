-- name: release_unique
-- A finished task keeps its unique key until unique_until (finished_at + unique_window); once
-- that has passed, the next enqueue of the key takes it back here, in its own transaction,
-- before it inserts.
UPDATE loom_task
SET unique_until = NULL
WHERE unique_slot = %(slot)s AND unique_until IS NOT NULL AND unique_until <= %(now)s
