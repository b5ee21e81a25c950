-- A consumer group's dead-lettered events stay claimed (a redelivery is dropped) but are marked, so
-- a replay of the dead letter (`python -m oms_platform.dlq replay`) is applied once by that group.
ALTER TABLE inbox ADD COLUMN dead_lettered boolean NOT NULL DEFAULT false;
