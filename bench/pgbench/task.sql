-- One task's life as three autocommit statements: enqueue, claim, complete.
INSERT INTO task (status, args) VALUES ('READY', '{}') RETURNING id \gset
UPDATE task SET status = 'RUNNING', started_at = now() WHERE id = :id;
UPDATE task SET status = 'SUCCESSFUL', finished_at = now() WHERE id = :id;
