-- name: rescue
-- See postgresql/rescue.sql. MariaDB assigns left to right, so status and finished_at are
-- computed before anything they read changes, and errors before claimed_by is cleared. errors is
-- text kept verbatim: the entry is appended as text.
UPDATE loom_task
SET finished_at = CASE WHEN %(retry)s AND attempts < max_attempts + %(extra)s AND NOT {superseded}
                       THEN NULL ELSE %(now)s END,
    status = CASE WHEN %(retry)s AND attempts < max_attempts + %(extra)s
                  THEN CASE WHEN {superseded} THEN 'CANCELLED' ELSE 'READY' END ELSE 'FAILED' END,
    available_at = %(now)s,
    errors = CONCAT(LEFT(RTRIM(errors), CHAR_LENGTH(RTRIM(errors)) - 1),
                    IF(RTRIM(errors) = '[]', '', ','),
                    JSON_OBJECT('exception_class_path', %(error_class)s, 'traceback', %(error_text)s,
                                'attempt', attempts, 'worker_id', claimed_by,
                                'started_at', REPLACE(CAST(last_attempted_at AS CHAR), ' ', 'T'),
                                'finished_at', %(now_iso)s),
                    ']'),
    claimed_by = NULL,
    lease_expires_at = NULL,
    cancel_requested = 0
WHERE status = 'RUNNING' AND {where}
