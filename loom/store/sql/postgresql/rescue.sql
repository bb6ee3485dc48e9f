-- name: rescue
-- Ends the attempt of RUNNING rows whose run is over without an outcome ({where}: an expired
-- lease, a worker known dead, named tasks past their hard limit, or a run whose outcome could not
-- be stored): back to READY while attempts remain and %(retry)s allows, else FAILED. The attempt
-- stays counted and the reason is appended to errors as one attempt entry (attempt, worker,
-- start, end), so a task that kills its worker every time cannot loop forever. errors is a json
-- column kept verbatim, so the entry is appended as text. Wakes workers for the READY ones.
-- {superseded}: a debounced task (replace=True) whose key a newer waiting task holds is not
-- put back: the newer one has the latest arguments, so this one ends CANCELLED.
WITH rescued AS (
    UPDATE ONLY loom_task
    SET status = CASE WHEN %(retry)s AND attempts < max_attempts + %(extra)s
                       THEN CASE WHEN {superseded} THEN 'CANCELLED' ELSE 'READY' END ELSE 'FAILED' END,
        finished_at = CASE WHEN %(retry)s AND attempts < max_attempts + %(extra)s AND NOT {superseded}
                           THEN NULL ELSE %(now)s END,
        available_at = %(now)s,
        errors = (left(rtrim(errors::text), -1)
                  || CASE WHEN rtrim(errors::text) = '[]' THEN '' ELSE ',' END
                  || json_build_object('exception_class_path', %(error_class)s::text,
                                       'traceback', %(error_text)s::text,
                                       'attempt', attempts, 'worker_id', claimed_by,
                                       'started_at', last_attempted_at,
                                       'finished_at', %(now)s::timestamptz)::text
                  || ']')::json,
        claimed_by = NULL,
        lease_expires_at = NULL,
        cancel_requested = FALSE
    WHERE status = 'RUNNING' AND {where}
    RETURNING id, status, queue_name
), woken AS (
    SELECT pg_notify('loom', queue_name) FROM (SELECT DISTINCT queue_name FROM rescued WHERE status = 'READY') AS q
)
SELECT id FROM rescued, (SELECT count(*) FROM woken) AS w
