-- The `sequence` of the status shown (OrderStatusChanged, numbered per order by the orchestrator): a
-- change replaces it when its sequence is higher; by status_at when either has none (older events).
ALTER TABLE orders ADD COLUMN status_seq integer;
