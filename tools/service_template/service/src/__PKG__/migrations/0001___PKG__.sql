-- The orders __NAME__ has seen (OrderPlaced on oms.orders.events). The platform's outbox, inbox and
-- schema_migrations tables come with the platform's own migrations.
CREATE TABLE orders_seen (
    order_id  uuid PRIMARY KEY,
    channel   text          NOT NULL,
    currency  text          NOT NULL,
    total     numeric(14,2) NOT NULL,
    placed_at timestamptz   NOT NULL
);
