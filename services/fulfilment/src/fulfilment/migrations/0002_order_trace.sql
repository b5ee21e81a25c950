-- The traceparent of the order's trace (the ShipmentRequested command's), kept only while tracing is on:
-- pick, pack and dispatch link their own traces to it.
ALTER TABLE shipments ADD COLUMN IF NOT EXISTS order_traceparent text;
