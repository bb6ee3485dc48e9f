CREATE TABLE task (
    id bigserial PRIMARY KEY,
    status text NOT NULL,
    args jsonb NOT NULL DEFAULT '{}',
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz
);
CREATE INDEX task_ready ON task (id) WHERE status = 'READY';
