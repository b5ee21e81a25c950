-- Channel API keys: only the SHA-256 of a key is stored; the key itself is shown once.
CREATE TABLE api_keys (
    key_id     uuid PRIMARY KEY,
    channel    text        NOT NULL,
    key_hash   bytea       NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE orders (
    order_id          uuid PRIMARY KEY,
    channel           text          NOT NULL,
    external_id       text          NOT NULL,
    status            text          NOT NULL DEFAULT 'pending',
    status_reason     text,
    status_changed_at timestamptz,
    customer_id       text          NOT NULL,
    customer          jsonb         NOT NULL,
    shipping_address  jsonb         NOT NULL,
    shipping_method   text          NOT NULL,
    currency          char(3)       NOT NULL,
    total             numeric(14,2) NOT NULL,
    payment           jsonb         NOT NULL,
    lines             jsonb         NOT NULL,
    created_at        timestamptz   NOT NULL,
    updated_at        timestamptz   NOT NULL,
    CONSTRAINT orders_channel_external_id UNIQUE (channel, external_id)
);
CREATE INDEX orders_channel_created ON orders (channel, created_at DESC, order_id DESC);
CREATE INDEX orders_created ON orders (created_at DESC, order_id DESC);
CREATE INDEX orders_customer ON orders (customer_id, created_at DESC);

-- A request's Idempotency-Key per channel, the hash of its body and the response it got.
CREATE TABLE idempotency_keys (
    channel      text        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    order_id     uuid        NOT NULL,
    response     jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, key)
);
