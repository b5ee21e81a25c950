-- Failed deadline decisions of a saga in a row (reset by any write of the saga): bounds its retries.
ALTER TABLE saga_instances ADD COLUMN deadline_failures int NOT NULL DEFAULT 0;
