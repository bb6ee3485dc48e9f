-- name: insert
-- New READY rows, in the caller's transaction, in one statement (many rows go through COPY on
-- PostgreSQL instead, see Store._copy). On PostgreSQL the statement-level trigger NOTIFYs the
-- rows' queues when the caller's transaction commits.
-- row: (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'READY', 0, '[]', '[]', FALSE, '')
INSERT INTO loom_task (id, task_path, backend, queue_name, priority, args, kwargs, run_after,
                       available_at, enqueued_at, max_attempts, timeout, hard_timeout, trace_context,
                       unique_key, unique_window, unique_replace, concurrency_key, concurrency_limit,
                       fair_key, workflow_step, atomic, status, attempts, worker_ids, errors, cancel_requested, progress_message)
VALUES {rows}
