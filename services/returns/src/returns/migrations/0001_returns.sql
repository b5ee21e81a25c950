-- Returns' own copies of other services' facts, kept from their events (no synchronous calls).
-- The orders it may see returns for (OrderPlaced): channel, currency, prices, customer and address.
-- A request locks its order's row: two requests for the same order are decided one after the other.
CREATE TABLE orders (
    order_id         uuid        PRIMARY KEY,
    channel          text        NOT NULL,
    external_id      text        NOT NULL,
    currency         text        NOT NULL,
    customer         jsonb       NOT NULL,
    shipping_address jsonb       NOT NULL,
    lines            jsonb       NOT NULL,  -- [{sku, quantity, unit_price}]
    created_at       timestamptz NOT NULL
);

-- Shipments (ShipmentsCreated): which units left from which location.
CREATE TABLE shipments (
    shipment_id uuid  PRIMARY KEY,
    order_id    uuid  NOT NULL,
    location_id text  NOT NULL,
    lines       jsonb NOT NULL  -- [{sku, quantity}]
);
CREATE INDEX shipments_order ON shipments (order_id);

-- Deliveries, per shipment (ShipmentDelivered) or of the whole order (OrderStatusChanged delivered,
-- shipment_id null); kept apart from shipments so their arrival order does not matter.
CREATE TABLE deliveries (
    order_id     uuid        NOT NULL,
    shipment_id  uuid,
    delivered_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX deliveries_shipment ON deliveries (order_id, coalesce(shipment_id, '00000000-0000-0000-0000-000000000000'));

-- SKU settings (SkuSettingsChanged from inventory): a SKU never heard of is returnable.
CREATE TABLE sku_settings (
    sku        text        PRIMARY KEY,
    returnable boolean     NOT NULL,
    changed_at timestamptz NOT NULL
);

-- Return authorisations (RMAs). The saga (saga_instances, keyed by return_id) drives them; status is
-- what the saga reached, written in the same transaction.
CREATE TABLE returns (
    return_id            uuid          PRIMARY KEY,
    order_id             uuid          NOT NULL,
    channel              text          NOT NULL,
    resolution           text          NOT NULL,  -- refund | exchange
    status               text          NOT NULL,
    outcome              text,                    -- refunded | exchanged | cancelled, once closed
    lines                jsonb         NOT NULL,  -- [{sku, quantity, reason, unit_price}]
    received             jsonb,                   -- [{sku, quantity, condition, location_id}]
    currency             text          NOT NULL,
    refund_amount        numeric(14,2),
    replacement_order_id uuid,
    carrier              text          NOT NULL,
    tracking_number      text          NOT NULL,
    history              jsonb         NOT NULL,  -- [{status, at}]
    created_at           timestamptz   NOT NULL,
    updated_at           timestamptz   NOT NULL
);
CREATE INDEX returns_order ON returns (order_id, return_id);
CREATE INDEX returns_status ON returns (status, return_id);

-- POST /v1/returns is idempotent per (channel, Idempotency-Key), as order capture's POST /v1/orders.
CREATE TABLE idempotency_keys (
    channel      text        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    return_id    uuid        NOT NULL,
    response     jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, key)
);

-- Serials of the return labels' tracking numbers.
CREATE SEQUENCE label_serials;
