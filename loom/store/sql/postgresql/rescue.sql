-- name: rescue
-- Ends the attempt of RUNNING rows whose worker is gone ({where}: expired lease, or a worker
-- known dead, or one task that overran its hard limit): back to READY while attempts remain,
-- else FAILED. The attempt stays counted and the reason is appended to errors, so a task that
-- kills its worker every time cannot loop forever. Wakes workers for the READY ones.
WITH rescued AS (
    UPDATE loom_task
    SET status = CASE WHEN attempts < max_attempts + %(extra)s THEN 'READY' ELSE 'FAILED' END,
        finished_at = CASE WHEN attempts < max_attempts + %(extra)s THEN NULL ELSE %(now)s END,
        available_at = %(now)s,
        errors = errors || jsonb_build_array(jsonb_build_object(
            'exception_class_path', %(error_class)s::text, 'traceback', %(error_text)s::text)),
        claimed_by = NULL,
        lease_expires_at = NULL,
        cancel_requested = FALSE
    WHERE status = 'RUNNING' AND {where}
    RETURNING id, status, queue_name
), woken AS (
    SELECT pg_notify('loom', queue_name) FROM (SELECT DISTINCT queue_name FROM rescued WHERE status = 'READY') AS q
)
SELECT id FROM rescued, (SELECT count(*) FROM woken) AS w
