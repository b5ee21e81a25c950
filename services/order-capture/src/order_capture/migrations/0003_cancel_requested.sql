-- A cancellation request is announced once per order: a repeat while it is pending answers the same
-- 202 without a second OrderCancellationRequested.
ALTER TABLE orders ADD COLUMN cancel_requested_at timestamptz, ADD COLUMN cancel_reason text;
