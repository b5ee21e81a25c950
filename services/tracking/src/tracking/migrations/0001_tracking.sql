-- What tracking knows of each order: its channel (who may read it) and its latest status.
CREATE TABLE orders (
    order_id      uuid PRIMARY KEY,
    -- From OrderPlaced; NULL while only later events were seen (then only operators can read it).
    channel       text,
    external_id   text,
    placed_at     timestamptz,
    status        text,
    status_reason text,
    -- changed_at of the status shown: an older status change arriving late does not replace it.
    status_at     timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The order's shipments as fulfilment created them, and where the carrier says each one is.
CREATE TABLE shipments (
    shipment_id     uuid PRIMARY KEY,
    order_id        uuid        NOT NULL,
    location_id     text        NOT NULL,
    carrier         text        NOT NULL,
    service         text        NOT NULL,
    tracking_number text        NOT NULL,
    status          text        NOT NULL DEFAULT 'created',
    -- The scan that set the status (the latest one by the carrier's own time).
    scan_status     text,
    scan_at         timestamptz,
    scan_location   text,
    scan_reason     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT shipments_carrier_tracking UNIQUE (carrier, tracking_number)
);
CREATE INDEX shipments_order ON shipments (order_id, shipment_id);

-- Every scan a carrier sent, once per (carrier, carrier's event id).
CREATE TABLE carrier_scans (
    carrier          text        NOT NULL,
    carrier_event_id text        NOT NULL,
    shipment_id      uuid        NOT NULL REFERENCES shipments,
    order_id         uuid        NOT NULL,
    status           text        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    location         text,
    reason           text,
    -- The id of the CarrierScanRecorded event (and of its timeline entry).
    event_id         uuid        NOT NULL UNIQUE,
    received_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (carrier, carrier_event_id)
);

-- Each order's timeline: one entry per event, whatever the redeliveries (event_id is unique).
CREATE TABLE timeline (
    id       bigserial PRIMARY KEY,
    order_id uuid        NOT NULL,
    event_id uuid        NOT NULL UNIQUE,
    at       timestamptz NOT NULL,
    type     text        NOT NULL,
    detail   text        NOT NULL
);
CREATE INDEX timeline_order ON timeline (order_id, at, id);

-- Live streams in every tracking process LISTEN here: the payload is the order id of a new entry
-- (PostgreSQL sends one notification per order and transaction, at commit).
CREATE FUNCTION timeline_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tracking_timeline', NEW.order_id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER timeline_notify AFTER INSERT ON timeline FOR EACH ROW EXECUTE FUNCTION timeline_notify();
