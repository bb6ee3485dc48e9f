-- name: insert_unique
-- A new task with a unique key, unless a task holds that key (loom.models: unique_slot): then
-- the holder's id comes back and nothing is inserted. The unique index on unique_slot decides,
-- in this one statement, whoever races. With replace, a waiting holder takes the new arguments
-- and run_after instead (last write wins); a running one is not a holder in that mode.
-- {on_conflict} is the vendor's clause (Store.insert_unique).
-- row: (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'READY', 0, '[]', '[]', FALSE, '')
INSERT INTO loom_task (id, task_path, backend, queue_name, priority, args, kwargs, run_after,
                       available_at, enqueued_at, max_attempts, timeout, hard_timeout, trace_context,
                       unique_key, unique_window, unique_replace, concurrency_key, concurrency_limit,
                       fair_key, workflow_step, atomic, status, attempts, worker_ids, errors, cancel_requested, progress_message)
VALUES {rows}
{on_conflict}
RETURNING id
