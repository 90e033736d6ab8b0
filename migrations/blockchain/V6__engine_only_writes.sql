-- Money moves through the engine's functions only. Until now the ledger's role could UPDATE
-- blockchain.balances and INSERT into blockchain.fodi_transactions directly: a bug or an
-- injection in any code running as that role could create money without a trace. The engine's
-- functions now run with their owner's rights (SECURITY DEFINER, with a fixed search_path so
-- that nothing the caller defines is picked up), and the role keeps only what the ledger's own
-- statements need:
-- - balances: INSERT of a new wallet's shards without their amounts (posted and pending take
--   their default, zero), UPDATE of min_balance and closed;
-- - fodi_transactions, pending_holds, the history checkpoints: read only.

ALTER FUNCTION blockchain.submit_transfers(uuid[], text[], uuid[], uuid[], bigint[], uuid[], bigint[],
                                           text[], text[], jsonb[], boolean, text[], integer)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION blockchain.submit_transfer(uuid, uuid, uuid, bigint, text, text, jsonb, text, integer)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION blockchain.rebalance_shards(uuid)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION blockchain.gather_shards(uuid, bigint)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION blockchain.advance_history(bigint, integer)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- A function is executable by PUBLIC unless revoked: only the ledger's role may call these.
REVOKE EXECUTE ON FUNCTION
    blockchain.submit_transfers(uuid[], text[], uuid[], uuid[], bigint[], uuid[], bigint[],
                                text[], text[], jsonb[], boolean, text[], integer),
    blockchain.submit_transfer(uuid, uuid, uuid, bigint, text, text, jsonb, text, integer),
    blockchain.rebalance_shards(uuid),
    blockchain.gather_shards(uuid, bigint),
    blockchain.advance_history(bigint, integer)
    FROM PUBLIC;

REVOKE INSERT, UPDATE ON blockchain.balances FROM fodi_ledger;
GRANT INSERT (wallet_id, shard, asset, shard_count, min_balance) ON blockchain.balances TO fodi_ledger;
GRANT UPDATE (min_balance, closed) ON blockchain.balances TO fodi_ledger;
REVOKE INSERT ON blockchain.fodi_transactions FROM fodi_ledger;
REVOKE INSERT, UPDATE, DELETE ON blockchain.pending_holds FROM fodi_ledger;
REVOKE INSERT, UPDATE, DELETE
    ON blockchain.history_horizon, blockchain.history_segments, blockchain.wallet_checkpoints
    FROM fodi_ledger;
DO $$ BEGIN
    EXECUTE format('REVOKE SELECT ON SEQUENCE %s FROM fodi_ledger',
                   pg_get_serial_sequence('blockchain.fodi_transactions', 'seq'));
END $$;
