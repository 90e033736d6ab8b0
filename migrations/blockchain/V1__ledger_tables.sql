-- Set `blockchain`, schema `blockchain`: the FODI token ledger.
--
-- Amounts are bigint counts of the smallest unit (1 FODI = 1_000_000_000 units), never floats;
-- overflow is an error. Double entry: every transfer debits one wallet and credits another of
-- the same asset, so the balances of an asset always sum to zero (the issuer's wallet is
-- negative by what is in circulation).
--
-- Transfers and their effects are applied by blockchain.submit_transfers() (next migration);
-- the tables below hold the state it maintains.

DO $$
BEGIN
    -- Group roles are cluster-wide: another database of the cluster may have created them,
    -- possibly at this very moment, hence the existence check and the exception handler.
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fodi_ledger') THEN
        CREATE ROLE fodi_ledger NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fodi_readonly') THEN
        CREATE ROLE fodi_readonly NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

CREATE FUNCTION blockchain.set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- What a wallet is: owner, asset, kind. Balances live in blockchain.balances, so the hot
-- path never rewrites (or locks) this row.
CREATE TABLE blockchain.wallets (
    id          uuid PRIMARY KEY,
    -- NULL for system wallets (issuer, rewards pool, fees).
    user_id     uuid REFERENCES public.users (id),
    asset       text NOT NULL CONSTRAINT wallets_asset_code CHECK (asset ~ '^[A-Z][A-Z0-9]{1,15}$'),
    kind        text NOT NULL
                CONSTRAINT wallets_kind_known CHECK (kind IN ('user', 'issuer', 'rewards_pool', 'fees')),
    -- Balance rows of the wallet. A wallet that pays (or is paid by) everyone would serialise
    -- every transfer on one row lock; spread over shards, concurrent transfers each take one.
    -- Only unbounded wallets are sharded: a bound is checked against one row.
    shard_count smallint NOT NULL DEFAULT 1
                CONSTRAINT wallets_shard_count_range CHECK (shard_count BETWEEN 1 AND 64),
    closed_at   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT wallets_user_iff_user_kind CHECK ((kind = 'user') = (user_id IS NOT NULL)),
    CONSTRAINT wallets_user_wallets_unsharded CHECK (kind <> 'user' OR shard_count = 1),
    -- What balances copy from their wallet (see there).
    CONSTRAINT wallets_id_asset_shards_key UNIQUE (id, asset, shard_count)
);
CREATE UNIQUE INDEX wallets_user_asset_key ON blockchain.wallets (user_id, asset) WHERE kind = 'user';
CREATE UNIQUE INDEX wallets_system_kind_asset_key ON blockchain.wallets (kind, asset) WHERE kind <> 'user';

-- A wallet's balance is the sum over its shards. Narrow rows, updated in place (HOT: no
-- indexed column changes), with room left on each page for the new versions.
CREATE TABLE blockchain.balances (
    wallet_id       uuid NOT NULL,
    shard           smallint NOT NULL,
    -- Copies of the wallet's (immutable) asset and shard count, held equal by the foreign key
    -- below: a single transfer then finds and locks its two balance rows, with everything its
    -- checks need, without reading the wallets table.
    asset           text NOT NULL,
    shard_count     smallint NOT NULL,
    posted          bigint NOT NULL DEFAULT 0,
    -- Held by open pending transfers (always on shard 0).
    pending_debits  bigint NOT NULL DEFAULT 0,
    pending_credits bigint NOT NULL DEFAULT 0,
    -- Lowest allowed posted balance minus holds; NULL: unbounded. Only on shard 0.
    min_balance     bigint,
    -- Copied from wallets.closed_at when the wallet closes: a transfer reads it from the row
    -- it has locked, so it cannot miss a close that committed while it waited for the lock.
    closed          boolean NOT NULL DEFAULT false,
    PRIMARY KEY (wallet_id, shard),
    CONSTRAINT balances_wallet_fkey FOREIGN KEY (wallet_id, asset, shard_count)
        REFERENCES blockchain.wallets (id, asset, shard_count),
    -- One combined check: each check is re-read and compiled for every statement that writes
    -- the table, which is measurable on a path that writes it for every transfer. It is the
    -- last line of defence behind submit_transfers' own checks.
    CONSTRAINT balances_within_limit CHECK (
        (min_balance IS NULL OR posted - pending_debits >= min_balance)
        AND pending_debits >= 0 AND pending_credits >= 0)
) WITH (fillfactor = 50);
-- Behind the foreign key (the primary key is led by wallet_id alone).
CREATE INDEX balances_wallet_fkey_idx ON blockchain.balances (wallet_id, asset, shard_count);

-- Every transfer ever applied; rows are never updated or deleted.
--
-- No foreign keys to wallets or to the pending transfer: submit_transfers validates both, and
-- a foreign key would take a KEY SHARE lock on the wallet row for every insert, turning the
-- hottest wallets into multixact contention points. Wallets are never deleted (see trigger).
CREATE TABLE blockchain.fodi_transactions (
    -- Chosen by the client: retrying with the same id can never apply a transfer twice.
    id               uuid PRIMARY KEY,
    -- The inserting transaction and the insertion order within it. Positions (tx_id, seq)
    -- below the oldest running transaction are final, which is what lets the sealer and the
    -- change feed read in order without missing a late commit.
    -- (xid8 as bigint: xid8 has no arithmetic, and bigint sorts the same)
    tx_id            bigint NOT NULL DEFAULT (pg_current_xact_id()::text)::bigint,
    seq              bigint NOT NULL GENERATED ALWAYS AS IDENTITY,
    -- 'transfer' moves funds at once; 'pending' holds them until a 'post', 'void' or 'expire'
    -- transfer naming it in pending_id resolves the hold.
    kind             text NOT NULL,
    debit_wallet_id  uuid NOT NULL,
    credit_wallet_id uuid NOT NULL,
    -- transfer/pending: the amount; post: the amount posted; void/expire: the hold released.
    amount           bigint NOT NULL,
    pending_id       uuid,
    expires_at       timestamptz,
    -- What the transfer is for ('purchase', 'reward', ...), the business object it belongs to
    -- (an order id, ...), and free-form details. Their shape is validated by the ledger crate.
    reason           text,
    reference        text,
    metadata         jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- One combined check (see balances): what submit_transfers guarantees, enforced once more.
    CONSTRAINT fodi_transactions_well_formed CHECK (
        amount > 0
        AND debit_wallet_id <> credit_wallet_id
        AND kind IN ('transfer', 'pending', 'post', 'void', 'expire')
        AND (kind IN ('transfer', 'pending')) = (pending_id IS NULL)
        AND (kind = 'pending') = (expires_at IS NOT NULL))
);
-- Statements: a wallet's entries in order. (Covering amount and kind as well would make deep
-- statements index-only, but costs every transfer ~10% of throughput: these two indexes are the
-- ones written at random places.)
CREATE INDEX fodi_transactions_debit_idx ON blockchain.fodi_transactions (debit_wallet_id, seq);
CREATE INDEX fodi_transactions_credit_idx ON blockchain.fodi_transactions (credit_wallet_id, seq);
-- The sealer and the change feed read the next transfers in (tx_id, seq) order.
CREATE INDEX fodi_transactions_position_idx ON blockchain.fodi_transactions (tx_id, seq);
-- A pending transfer is resolved (posted, voided or expired) at most once.
CREATE UNIQUE INDEX fodi_transactions_pending_resolved_once ON blockchain.fodi_transactions (pending_id)
    WHERE pending_id IS NOT NULL;

-- Open holds: one row per pending transfer not yet resolved; the expiry sweep's work list.
CREATE TABLE blockchain.pending_holds (
    pending_id uuid PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX pending_holds_expires_at_idx ON blockchain.pending_holds (expires_at);

CREATE TABLE blockchain.reward_history (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES public.users (id),
    reason         text NOT NULL CONSTRAINT reward_history_reason_length CHECK (length(reason) BETWEEN 1 AND 64),
    reference      text NOT NULL CONSTRAINT reward_history_reference_length CHECK (length(reference) BETWEEN 1 AND 256),
    order_id       uuid REFERENCES public.orders (id),
    amount         bigint NOT NULL CONSTRAINT reward_history_amount_positive CHECK (amount > 0),
    -- The reward's transfer (same id); fodi_transactions has the movement itself.
    transaction_id uuid NOT NULL CONSTRAINT reward_history_transaction_key UNIQUE
                   REFERENCES blockchain.fodi_transactions (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- A user is rewarded at most once for the same reason and reference.
    CONSTRAINT reward_history_once UNIQUE (user_id, reason, reference)
);
CREATE INDEX reward_history_order_id_idx ON blockchain.reward_history (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX reward_history_user_created_idx ON blockchain.reward_history (user_id, created_at DESC);

CREATE TABLE blockchain.nft_metadata (
    -- Chosen by the minter: minting again with the same id returns the original.
    id         uuid PRIMARY KEY,
    -- One owner column: ownership can never be split. NULL once burned.
    owner_id   uuid REFERENCES public.users (id),
    collection text NOT NULL CONSTRAINT nft_metadata_collection_length CHECK (length(collection) BETWEEN 1 AND 100),
    token_uri  text CONSTRAINT nft_metadata_token_uri_length CHECK (length(token_uri) BETWEEN 1 AND 2048),
    metadata   jsonb NOT NULL DEFAULT '{}'
               CONSTRAINT nft_metadata_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    minted_at  timestamptz NOT NULL DEFAULT now(),
    burned_at  timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT nft_metadata_owned_until_burned CHECK ((burned_at IS NULL) = (owner_id IS NOT NULL))
);
CREATE INDEX nft_metadata_owner_id_idx ON blockchain.nft_metadata (owner_id, minted_at) WHERE burned_at IS NULL;
CREATE INDEX nft_metadata_metadata_idx ON blockchain.nft_metadata USING gin (metadata jsonb_path_ops);

CREATE TABLE blockchain.nft_transfers (
    -- Chosen by the client: a retried transfer is recognised, never applied twice.
    id           uuid PRIMARY KEY,
    nft_id       uuid NOT NULL REFERENCES blockchain.nft_metadata (id),
    -- NULL sender: minted; NULL receiver: burned.
    from_user_id uuid REFERENCES public.users (id),
    to_user_id   uuid REFERENCES public.users (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT nft_transfers_has_a_party CHECK (from_user_id IS NOT NULL OR to_user_id IS NOT NULL),
    CONSTRAINT nft_transfers_two_parties CHECK (from_user_id IS DISTINCT FROM to_user_id)
);
CREATE INDEX nft_transfers_nft_id_idx ON blockchain.nft_transfers (nft_id, created_at);
CREATE INDEX nft_transfers_from_user_id_idx ON blockchain.nft_transfers (from_user_id) WHERE from_user_id IS NOT NULL;
CREATE INDEX nft_transfers_to_user_id_idx ON blockchain.nft_transfers (to_user_id) WHERE to_user_id IS NOT NULL;

-- Tamper evidence. Block h covers the transfers with positions in (last position of block
-- h-1, last position of block h], in (tx_id, seq) order; it commits to them through a SHA-256
-- Merkle root and to block h-1 through previous_hash. See ledger::seal for the encodings.
CREATE TABLE blockchain.blocks (
    height            bigint PRIMARY KEY CONSTRAINT blocks_height_not_negative CHECK (height >= 0),
    last_tx_id        bigint NOT NULL,
    last_seq          bigint NOT NULL,
    transaction_count integer NOT NULL CONSTRAINT blocks_not_empty CHECK (transaction_count > 0),
    merkle_root       bytea NOT NULL CONSTRAINT blocks_merkle_root_sha256 CHECK (length(merkle_root) = 32),
    previous_hash     bytea NOT NULL CONSTRAINT blocks_previous_hash_sha256 CHECK (length(previous_hash) = 32),
    hash              bytea NOT NULL CONSTRAINT blocks_hash_key UNIQUE
                      CONSTRAINT blocks_hash_sha256 CHECK (length(hash) = 32),
    sealed_at         timestamptz NOT NULL
);

-- Progress of change-feed consumers that keep their position in the database.
CREATE TABLE blockchain.feed_cursors (
    consumer   text PRIMARY KEY CONSTRAINT feed_cursors_consumer_length CHECK (length(consumer) BETWEEN 1 AND 100),
    tx_id      bigint NOT NULL,
    seq        bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER wallets_set_updated_at BEFORE UPDATE ON blockchain.wallets
    FOR EACH ROW EXECUTE FUNCTION blockchain.set_updated_at();
CREATE TRIGGER nft_metadata_set_updated_at BEFORE UPDATE ON blockchain.nft_metadata
    FOR EACH ROW EXECUTE FUNCTION blockchain.set_updated_at();
CREATE TRIGGER feed_cursors_set_updated_at BEFORE UPDATE ON blockchain.feed_cursors
    FOR EACH ROW EXECUTE FUNCTION blockchain.set_updated_at();

-- History refers to wallets by id without foreign keys (see fodi_transactions): deleting a
-- wallet would orphan it. Wallets are closed instead.
CREATE FUNCTION blockchain.refuse_wallet_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'wallets are never deleted; close wallet % instead', OLD.id
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER wallets_never_deleted BEFORE DELETE ON blockchain.wallets
    FOR EACH ROW EXECUTE FUNCTION blockchain.refuse_wallet_delete();

-- Tables are named, not "ALL TABLES": the set's history table lives in this schema too, and
-- only the migrator may write it. Transfer history and blocks are append-only for the role.
GRANT USAGE ON SCHEMA blockchain TO fodi_ledger, fodi_readonly;
GRANT SELECT, INSERT, UPDATE ON blockchain.wallets, blockchain.balances, blockchain.nft_metadata TO fodi_ledger;
GRANT SELECT, INSERT
    ON blockchain.fodi_transactions, blockchain.reward_history, blockchain.nft_transfers, blockchain.blocks
    TO fodi_ledger;
GRANT SELECT, INSERT, UPDATE, DELETE ON blockchain.pending_holds, blockchain.feed_cursors TO fodi_ledger;
GRANT SELECT
    ON blockchain.wallets, blockchain.balances, blockchain.fodi_transactions, blockchain.pending_holds,
       blockchain.reward_history, blockchain.nft_metadata, blockchain.nft_transfers, blockchain.blocks,
       blockchain.feed_cursors
    TO fodi_readonly;
ALTER DEFAULT PRIVILEGES IN SCHEMA blockchain GRANT SELECT ON TABLES TO fodi_ledger, fodi_readonly;
