-- The traceparent of the order's trace (its OrderPlaced message's): requesting, receiving and cancelling a
-- return start traces of their own that link to it.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS order_traceparent text;
