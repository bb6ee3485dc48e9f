-- name: rescue
-- See postgresql/rescue.sql (errors is text kept verbatim: the entry is appended as text).
UPDATE loom_task
SET status = CASE WHEN %(retry)s AND attempts < max_attempts + %(extra)s
                       THEN CASE WHEN {superseded} THEN 'CANCELLED' ELSE 'READY' END ELSE 'FAILED' END,
    finished_at = CASE WHEN %(retry)s AND attempts < max_attempts + %(extra)s AND NOT {superseded}
                       THEN NULL ELSE %(now)s END,
    available_at = %(now)s,
    errors = substr(rtrim(errors), 1, length(rtrim(errors)) - 1)
             || CASE WHEN rtrim(errors) = '[]' THEN '' ELSE ',' END
             || json_object('exception_class_path', %(error_class)s, 'traceback', %(error_text)s,
                            'attempt', attempts, 'worker_id', claimed_by,
                            'started_at', replace(last_attempted_at, ' ', 'T'), 'finished_at', %(now_iso)s)
             || ']',
    claimed_by = NULL,
    lease_expires_at = NULL,
    cancel_requested = 0
WHERE status = 'RUNNING' AND {where}
RETURNING id
