-- The `sequence` of the status change shown (OrderStatusChanged, numbered per order by the
-- orchestrator): a change applies when its sequence is higher; by changed_at when either has none.
ALTER TABLE orders ADD COLUMN status_seq integer;
