-- A saga's version, raised by every write of its row: a consumer that read sagas without locking them
-- (oms_saga.runner.SagaBatch.write_sql) writes only if each is still at the version it read.
ALTER TABLE saga_instances ADD COLUMN version bigint NOT NULL DEFAULT 0;
