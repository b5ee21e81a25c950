-- Stock locations (warehouses, stores); the country drives sourcing (destination country first).
CREATE TABLE locations (
    location_id text        PRIMARY KEY,
    name        text        NOT NULL,
    country     char(2)     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Per-SKU settings; a SKU without a row has the defaults.
CREATE TABLE sku_settings (
    sku                 text        PRIMARY KEY,
    allow_backorder     boolean     NOT NULL DEFAULT false,
    low_stock_threshold integer     NOT NULL DEFAULT 0 CHECK (low_stock_threshold >= 0),
    returnable          boolean     NOT NULL DEFAULT true,
    -- True while available is under the threshold: LowStock is emitted once per crossing.
    low_stock_alerted   boolean     NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- The last line of defence against overselling: whatever the code does, a row can never hold more
-- reserved units than it has, nor a negative count (on_hand >= 0 follows from the two).
CREATE TABLE stock (
    sku         text        NOT NULL,
    location_id text        NOT NULL REFERENCES locations,
    on_hand     integer     NOT NULL,
    reserved    integer     NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, location_id),
    CONSTRAINT stock_reserved_within_on_hand CHECK (reserved >= 0 AND reserved <= on_hand)
) WITH (fillfactor = 50);  -- rows are updated by every reservation: room on the page keeps updates HOT

-- Audit trail: every change of on_hand.
CREATE TABLE stock_movements (
    movement_id bigserial   PRIMARY KEY,
    sku         text        NOT NULL,
    location_id text        NOT NULL,
    delta       integer     NOT NULL CHECK (delta <> 0),
    reason      text        NOT NULL,
    order_id    uuid,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_movements_sku ON stock_movements (sku, movement_id DESC);

-- One row per order: the outcome of its ReserveStock (reserved, backordered, failed) and what
-- happened since (released, committed). Replayed as the answer to a repeated command.
CREATE SEQUENCE backorder_arrival;
CREATE TABLE reservations (
    order_id            uuid        PRIMARY KEY,
    reservation_id      uuid        NOT NULL UNIQUE,
    status              text        NOT NULL
        CHECK (status IN ('reserved', 'backordered', 'failed', 'released', 'committed')),
    destination_country text        NOT NULL,
    lines               jsonb       NOT NULL,               -- [{sku, quantity}] as requested
    allocations         jsonb       NOT NULL DEFAULT '[]',  -- [{location_id, sku, quantity, committed}]
    strategy            text,
    reason              text,
    short               jsonb       NOT NULL DEFAULT '[]',  -- [{sku, requested, available}]
    failure_reason      text,
    released            jsonb,                              -- what the release gave back
    release_reason      text,
    backorder_seq       bigint,                             -- arrival order in the backorder queue (a sequence)
    -- The ReserveStock a later StockReserved (a served backorder) answers.
    command_event_id    uuid        NOT NULL,
    correlation_id      uuid        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reservations_waiting ON reservations (backorder_seq) WHERE status = 'backordered';

-- The demand of waiting backorders per SKU: new orders may not take units the queue needs.
CREATE TABLE backorder_lines (
    sku      text    NOT NULL,
    order_id uuid    NOT NULL REFERENCES reservations ON DELETE CASCADE,
    quantity integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (sku, order_id)
);
CREATE INDEX backorder_lines_order ON backorder_lines (order_id);

-- Commands applied once per business id (CommitStock per shipment, Restock per restock id).
CREATE TABLE stock_operations (
    kind         text        NOT NULL,
    operation_id uuid        NOT NULL,
    order_id     uuid        NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, operation_id)
);
