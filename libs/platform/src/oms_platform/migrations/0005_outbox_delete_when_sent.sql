-- A published row is deleted when the relay marks it (no longer updated with sent_at and deleted an
-- hour later): one tuple write per row instead of a copy of the row, a second index entry and a
-- delete. Kafka keeps what was sent. Every row in the table is now unsent or parked, so the relay
-- reads in primary-key order and the partial index (one more write per insert) goes.
DELETE FROM outbox WHERE sent_at IS NOT NULL;
DROP INDEX IF EXISTS outbox_unsent;
ALTER TABLE outbox DROP COLUMN sent_at;
