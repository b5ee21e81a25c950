-- One shipment per order and location; its carrier booking and where it is in the warehouse flow.
CREATE TABLE shipments (
    shipment_id      uuid PRIMARY KEY,
    order_id         uuid        NOT NULL,
    location_id      text        NOT NULL,
    lines            jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'created'
        CHECK (status IN ('created', 'picked', 'packed', 'dispatched', 'delivered', 'cancelled')),
    shipping_method  text        NOT NULL,
    shipping_address jsonb       NOT NULL,
    carrier          text        NOT NULL,
    service          text        NOT NULL,
    tracking_number  text        NOT NULL,
    -- The label as the carrier returned it; NULL when the carrier renders it on demand.
    label_pdf        bytea,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    dispatched_at    timestamptz,
    CONSTRAINT shipments_order_location UNIQUE (order_id, location_id),
    CONSTRAINT shipments_carrier_tracking UNIQUE (carrier, tracking_number)
);
-- Operators' work lists: a location's shipments in a status, oldest first.
CREATE INDEX shipments_location_status ON shipments (location_id, status, shipment_id);
CREATE INDEX shipments_status ON shipments (status, shipment_id);

-- Orders whose shipments were cancelled: a CreateShipments arriving later creates nothing.
CREATE TABLE order_cancellations (
    order_id     uuid PRIMARY KEY,
    reason       text        NOT NULL,
    cancelled_at timestamptz NOT NULL DEFAULT now()
);

-- Serials of the built-in carrier's tracking numbers (9 digits).
CREATE SEQUENCE tracking_serial MAXVALUE 999999999 NO CYCLE;
