-- An optimistic consumer batch (oms_platform.inbox.claim_optimistic) is one statement outside any
-- transaction: when one of its events was applied already, or what it read was written meanwhile,
-- this raises (SQLSTATE OM001) and the statement, every write of the batch with it, is undone.
CREATE OR REPLACE FUNCTION oms_batch_conflict(conflict boolean) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF conflict THEN
        RAISE EXCEPTION 'the batch read what another wrote meanwhile, or an event of it was applied already'
            USING ERRCODE = 'OM001';
    END IF;
    RETURN false;
END
$$;
