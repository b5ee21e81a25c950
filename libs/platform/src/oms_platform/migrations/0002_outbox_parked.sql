-- A row Kafka refuses for good (e.g. larger than the broker accepts) is parked: kept with its error,
-- never read again by the relay, so everything after it flows.
ALTER TABLE outbox ADD COLUMN parked_at timestamptz, ADD COLUMN last_error text;
-- The inbox is pruned by age (the relay's leader deletes rows older than INBOX_RETENTION_HOURS).
CREATE INDEX inbox_processed_at ON inbox (processed_at);
