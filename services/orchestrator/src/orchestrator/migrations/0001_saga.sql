-- Saga instances of the generic engine (oms_saga): one row per saga, locked while a message or a
-- deadline is applied to it.
CREATE TABLE saga_instances (
    saga_id       uuid        PRIMARY KEY,
    saga_type     text        NOT NULL,
    order_id      uuid        NOT NULL,
    state         text        NOT NULL,  -- pending | running | compensating | completed | failed | cancelled
    current_step  text,
    stuck         boolean     NOT NULL DEFAULT false,
    status        text,                  -- the public status the saga last announced
    status_reason text,
    data          jsonb       NOT NULL,
    control       jsonb       NOT NULL,  -- the engine's bookkeeping (commands sent, compensation plan, ...)
    deadline_at   timestamptz,
    attempts      int         NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    CONSTRAINT saga_instances_type_order UNIQUE (saga_type, order_id)
);
-- The deadline ticker reads only sagas with a deadline, earliest first.
CREATE INDEX saga_instances_due ON saga_instances (deadline_at) WHERE deadline_at IS NOT NULL;
CREATE INDEX saga_instances_stuck ON saga_instances (saga_id) WHERE stuck;
CREATE INDEX saga_instances_state ON saga_instances (state, saga_id);

-- Every step a saga went through (forward steps and compensations), with its times and outcome.
CREATE TABLE saga_steps (
    saga_id     uuid        NOT NULL,
    seq         int         NOT NULL,
    step        text        NOT NULL,
    kind        text        NOT NULL,  -- forward | compensation
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    attempts    int         NOT NULL,
    outcome     text,                  -- null while current; succeeded, passed, failed, timed_out, ...
    detail      text,
    PRIMARY KEY (saga_id, seq)
);

-- Messages a saga did not apply (stale, duplicate, deferred, refused), for operators.
CREATE TABLE saga_log (
    id           bigserial   PRIMARY KEY,
    saga_id      uuid        NOT NULL,
    at           timestamptz NOT NULL,
    event_type   text        NOT NULL,
    event_id     uuid,
    causation_id uuid,
    disposition  text        NOT NULL,
    detail       text
);
CREATE INDEX saga_log_saga ON saga_log (saga_id, id);
