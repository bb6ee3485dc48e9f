-- name: elect
-- Takes or keeps a cluster-wide role: succeeds when this worker already holds it or the holder's
-- lease has expired. The row itself is created once by Store.elect (insert, ignoring a clash).
UPDATE loom_leader
SET holder = %(worker)s, expires_at = %(until)s
WHERE name = %(name)s AND (holder = %(worker)s OR expires_at < %(now)s)
