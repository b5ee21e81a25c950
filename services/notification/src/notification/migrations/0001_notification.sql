-- Notification's copy of each order's customer (from OrderPlaced): who the emails go to.
CREATE TABLE orders (
    order_id     uuid PRIMARY KEY,
    channel      text        NOT NULL,
    external_id  text        NOT NULL,
    customer_id  text        NOT NULL,
    email        text        NOT NULL,
    name         text        NOT NULL,
    currency     text        NOT NULL,
    total        numeric     NOT NULL,
    lines        jsonb       NOT NULL,
    placed_at    timestamptz NOT NULL
);
CREATE INDEX orders_customer ON orders (customer_id);

-- A customer's choices: opt-out of non-essential email, and the language of the emails.
CREATE TABLE preferences (
    customer_id           text PRIMARY KEY,
    non_essential_email   boolean     NOT NULL DEFAULT true,
    locale                text,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_subscriptions (
    subscription_id uuid PRIMARY KEY,
    url             text        NOT NULL,
    event_types     text[]      NOT NULL,
    secret          text        NOT NULL,
    description     text,
    status          text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'deleted')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The delivery log and the sender's work queue: one row per email or webhook delivery, written in
-- the transaction that consumed its event, sent after commit by the sender loop.
CREATE TABLE notifications (
    notification_id uuid PRIMARY KEY,
    -- Insertion order (the delivery log's order, and a tie-break for occurred_at).
    seq             bigserial   NOT NULL,
    channel         text        NOT NULL CHECK (channel IN ('email', 'webhook')),
    order_id        uuid        NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    -- email: the template, what makes it once-only, what it says; recipient set when it is sent.
    template        text,
    dedupe_key      text,
    context         jsonb,
    recipient       text,
    -- webhook: the subscription, its URL when the row was written, and the envelope sent.
    subscription_id uuid,
    url             text,
    body            jsonb,
    -- The event's time: one order's webhooks reach a subscriber in (occurred_at, seq) order.
    occurred_at     timestamptz,
    status          text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped', 'cancelled')),
    attempts        integer     NOT NULL DEFAULT 0,
    max_attempts    integer     NOT NULL,
    last_error      text,
    -- When it is due; while it is being sent, when its lease ends (another process may then take it).
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    CONSTRAINT notifications_email_once UNIQUE (dedupe_key, template),
    CONSTRAINT notifications_webhook_once UNIQUE (event_id, subscription_id)
);
-- The sender's claim: due rows of a channel.
CREATE INDEX notifications_due ON notifications (channel, next_attempt_at) WHERE status IN ('pending', 'sending');
-- Webhook order: the earlier unfinished deliveries of the same subscription and order.
CREATE INDEX notifications_webhook_order ON notifications (subscription_id, order_id, occurred_at, seq)
    WHERE status IN ('pending', 'sending');
CREATE INDEX notifications_order ON notifications (order_id, seq);
CREATE INDEX notifications_status ON notifications (status, seq);
