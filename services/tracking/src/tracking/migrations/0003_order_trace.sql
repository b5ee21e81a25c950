-- The traceparent of the order's trace (its OrderPlaced message's): a carrier scan's own trace links to it.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS order_traceparent text;
