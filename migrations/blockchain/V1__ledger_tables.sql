-- Set `blockchain`, schema `blockchain`: the FODI token ledger.
--
-- Amounts are bigint counts of the smallest unit (1 FODI = 1_000_000_000 units), never
-- floats; PostgreSQL raises an error on overflow instead of wrapping. Double entry: every
-- transfer debits one wallet and credits another of the same asset, so the balances of an
-- asset always sum to zero (the issuer's wallet is negative by what is in circulation).

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

CREATE TABLE blockchain.wallets (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL for system wallets (issuer, rewards pool, fees).
    user_id         uuid REFERENCES public.users (id),
    asset           text NOT NULL DEFAULT 'FODI'
                    CONSTRAINT wallets_asset_code CHECK (asset ~ '^[A-Z][A-Z0-9]{1,15}$'),
    kind            text NOT NULL DEFAULT 'user'
                    CONSTRAINT wallets_kind_known CHECK (kind IN ('user', 'issuer', 'rewards_pool', 'fees')),
    -- Posted balance.
    balance         bigint NOT NULL DEFAULT 0,
    -- Held by pending transfers, not yet posted or voided.
    pending_debits  bigint NOT NULL DEFAULT 0 CONSTRAINT wallets_pending_debits_not_negative CHECK (pending_debits >= 0),
    pending_credits bigint NOT NULL DEFAULT 0 CONSTRAINT wallets_pending_credits_not_negative CHECK (pending_credits >= 0),
    -- Lowest balance allowed after holds; NULL means unbounded (system wallets only).
    min_balance     bigint,
    closed_at       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT wallets_user_iff_user_kind CHECK ((kind = 'user') = (user_id IS NOT NULL)),
    -- A user wallet can never go below zero: the last line of defence behind the ledger's checks.
    CONSTRAINT wallets_user_bounded CHECK (kind <> 'user' OR coalesce(min_balance >= 0, false)),
    CONSTRAINT wallets_within_limit CHECK (min_balance IS NULL OR balance - pending_debits >= min_balance)
);
CREATE UNIQUE INDEX wallets_user_asset_key ON blockchain.wallets (user_id, asset) WHERE kind = 'user';
CREATE UNIQUE INDEX wallets_system_kind_asset_key ON blockchain.wallets (kind, asset) WHERE kind <> 'user';

CREATE TABLE blockchain.fodi_transactions (
    -- Chosen by the client: retrying with the same id can never apply a transfer twice.
    id               uuid PRIMARY KEY,
    -- Insertion order, used by the sealer and the change feed.
    seq              bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT fodi_transactions_seq_key UNIQUE,
    debit_wallet_id  uuid NOT NULL REFERENCES blockchain.wallets (id),
    credit_wallet_id uuid NOT NULL REFERENCES blockchain.wallets (id),
    amount           bigint NOT NULL CONSTRAINT fodi_transactions_amount_positive CHECK (amount > 0),
    asset            text NOT NULL,
    -- 'posted': moves funds at once; 'pending': reserves them until a 'post_pending',
    -- 'void_pending' or 'expire_pending' transfer naming it in pending_id resolves it.
    kind             text NOT NULL DEFAULT 'posted'
                     CONSTRAINT fodi_transactions_kind_known CHECK (kind IN
                         ('posted', 'pending', 'post_pending', 'void_pending', 'expire_pending')),
    pending_id       uuid REFERENCES blockchain.fodi_transactions (id),
    -- For 'pending' transfers: when the reservation lapses if neither posted nor voided.
    expires_at       timestamptz,
    -- What the transfer is for ('purchase', 'reward', 'refund', ...) and the business
    -- object it belongs to (an order id, ...).
    reason           text CONSTRAINT fodi_transactions_reason_length CHECK (length(reason) BETWEEN 1 AND 64),
    reference        text CONSTRAINT fodi_transactions_reference_length CHECK (length(reference) BETWEEN 1 AND 256),
    metadata         jsonb NOT NULL DEFAULT '{}'
                     CONSTRAINT fodi_transactions_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fodi_transactions_two_wallets CHECK (debit_wallet_id <> credit_wallet_id),
    CONSTRAINT fodi_transactions_pending_link CHECK
        ((kind IN ('posted', 'pending')) = (pending_id IS NULL)),
    CONSTRAINT fodi_transactions_expiry_only_pending CHECK (expires_at IS NULL OR kind = 'pending')
);
-- Wallet statements: history of one wallet, newest first.
CREATE INDEX fodi_transactions_debit_idx ON blockchain.fodi_transactions (debit_wallet_id, seq);
CREATE INDEX fodi_transactions_credit_idx ON blockchain.fodi_transactions (credit_wallet_id, seq);
-- At most one resolution (post, void or expiry) per pending transfer.
CREATE UNIQUE INDEX fodi_transactions_pending_resolved_once ON blockchain.fodi_transactions (pending_id)
    WHERE pending_id IS NOT NULL;
-- The expiry sweep finds lapsed reservations without scanning history.
CREATE INDEX fodi_transactions_expiring_idx ON blockchain.fodi_transactions (expires_at)
    WHERE kind = 'pending';

CREATE TABLE blockchain.reward_history (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid NOT NULL REFERENCES public.users (id),
    reason         text NOT NULL CONSTRAINT reward_history_reason_length CHECK (length(reason) BETWEEN 1 AND 64),
    reference      text NOT NULL CONSTRAINT reward_history_reference_length CHECK (length(reference) BETWEEN 1 AND 256),
    order_id       uuid REFERENCES public.orders (id),
    amount         bigint NOT NULL CONSTRAINT reward_history_amount_positive CHECK (amount > 0),
    transaction_id uuid NOT NULL CONSTRAINT reward_history_transaction_key UNIQUE
                   REFERENCES blockchain.fodi_transactions (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- A user is rewarded at most once for the same reason and reference.
    CONSTRAINT reward_history_once UNIQUE (user_id, reason, reference)
);
CREATE INDEX reward_history_order_id_idx ON blockchain.reward_history (order_id) WHERE order_id IS NOT NULL;

CREATE TABLE blockchain.nft_metadata (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- One owner column: ownership can never be split. NULL once burned.
    owner_id   uuid REFERENCES public.users (id),
    collection text NOT NULL CONSTRAINT nft_metadata_collection_length CHECK (length(collection) BETWEEN 1 AND 100),
    token_uri  text,
    metadata   jsonb NOT NULL DEFAULT '{}'
               CONSTRAINT nft_metadata_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    minted_at  timestamptz NOT NULL DEFAULT now(),
    burned_at  timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT nft_metadata_owned_until_burned CHECK ((burned_at IS NULL) = (owner_id IS NOT NULL))
);
CREATE INDEX nft_metadata_owner_id_idx ON blockchain.nft_metadata (owner_id) WHERE burned_at IS NULL;
CREATE INDEX nft_metadata_metadata_idx ON blockchain.nft_metadata USING gin (metadata jsonb_path_ops);

CREATE TABLE blockchain.nft_transfers (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
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

-- Tamper evidence: each block commits to a range of transfers (by seq) through a SHA-256
-- Merkle root, and to its predecessor through previous_hash.
CREATE TABLE blockchain.blocks (
    height            bigint PRIMARY KEY CONSTRAINT blocks_height_not_negative CHECK (height >= 0),
    first_seq         bigint NOT NULL,
    last_seq          bigint NOT NULL,
    transaction_count integer NOT NULL CONSTRAINT blocks_not_empty CHECK (transaction_count > 0),
    merkle_root       bytea NOT NULL CONSTRAINT blocks_merkle_root_sha256 CHECK (length(merkle_root) = 32),
    previous_hash     bytea NOT NULL CONSTRAINT blocks_previous_hash_sha256 CHECK (length(previous_hash) = 32),
    hash              bytea NOT NULL CONSTRAINT blocks_hash_key UNIQUE
                      CONSTRAINT blocks_hash_sha256 CHECK (length(hash) = 32),
    sealed_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT blocks_seq_range CHECK (first_seq <= last_seq)
);

CREATE TRIGGER wallets_set_updated_at BEFORE UPDATE ON blockchain.wallets
    FOR EACH ROW EXECUTE FUNCTION blockchain.set_updated_at();
CREATE TRIGGER nft_metadata_set_updated_at BEFORE UPDATE ON blockchain.nft_metadata
    FOR EACH ROW EXECUTE FUNCTION blockchain.set_updated_at();

-- Tables are named, not "ALL TABLES": the set's history table lives in this schema too, and
-- only the migrator may write it. History is append-only: no UPDATE or DELETE on it.
GRANT USAGE ON SCHEMA blockchain TO fodi_ledger, fodi_readonly;
GRANT SELECT, INSERT, UPDATE ON blockchain.wallets, blockchain.nft_metadata TO fodi_ledger;
GRANT SELECT, INSERT
    ON blockchain.fodi_transactions, blockchain.reward_history, blockchain.nft_transfers, blockchain.blocks
    TO fodi_ledger;
GRANT SELECT
    ON blockchain.wallets, blockchain.fodi_transactions, blockchain.reward_history,
       blockchain.nft_metadata, blockchain.nft_transfers, blockchain.blocks
    TO fodi_readonly;
ALTER DEFAULT PRIVILEGES IN SCHEMA blockchain GRANT SELECT, INSERT ON TABLES TO fodi_ledger;
ALTER DEFAULT PRIVILEGES IN SCHEMA blockchain GRANT USAGE, SELECT ON SEQUENCES TO fodi_ledger;
ALTER DEFAULT PRIVILEGES IN SCHEMA blockchain GRANT SELECT ON TABLES TO fodi_readonly;
