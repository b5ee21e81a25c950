-- This service's copy of the channel API keys issued by order capture (oms.channels.events).
CREATE TABLE channel_keys (
    key_id     uuid PRIMARY KEY,
    channel    text        NOT NULL,
    key_hash   bytea       NOT NULL UNIQUE,
    issued_at  timestamptz NOT NULL,
    revoked_at timestamptz
);
