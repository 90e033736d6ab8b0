-- Trust boundaries on the money path.
--
-- * Only the issuer's wallet is unbounded. The rewards pool and the fees wallet were unbounded
--   like the issuer, so paying a reward created money; from here on every balance row of those
--   wallets is bounded at zero, and the treasury funds them from the issuer. A pool that went
--   below zero before this migration is first covered from the issuer, by a transfer recorded
--   like any other (reason 'issuance'), so the history still explains every balance.
-- * A sharded wallet's bound holds row by row: each shard spends only what it holds. Its free
--   funds move between its own shards (the wallet's balance, their sum, does not change):
--   spread evenly once issued (rebalance_shards), and for a transfer the shard it landed on
--   could not pay, what it needs moved onto one shard, the rest spread again (gather_shards).
-- * Every transfer records who submitted it (submitted_by: the API caller's name).
-- * The two submit functions take the submitter and, optionally, the shard a sharded wallet's
--   movement lands on (NULL: a random one, as before). A post or void of a lapsed hold is
--   'pending_expired' even once the expiry job has released it (it was
--   'pending_already_resolved' then). Both are otherwise V3's (batch) and V2's (single)
--   functions unchanged.

ALTER TABLE blockchain.fodi_transactions ADD COLUMN submitted_by text
    CONSTRAINT fodi_transactions_submitted_by_length CHECK (length(submitted_by) BETWEEN 1 AND 100);

-- Cover each system wallet's deficit from its asset's issuer, shard by shard.
DO $$
DECLARE
    short record;
    issuer uuid;
BEGIN
    FOR short IN
        SELECT b.wallet_id, b.shard, b.asset, -(b.posted - b.pending_debits) AS deficit
          FROM blockchain.balances b
          JOIN blockchain.wallets w ON w.id = b.wallet_id
         WHERE w.kind IN ('rewards_pool', 'fees') AND b.posted - b.pending_debits < 0
         ORDER BY b.wallet_id, b.shard
    LOOP
        SELECT w.id INTO issuer FROM blockchain.wallets w WHERE w.kind = 'issuer' AND w.asset = short.asset;
        IF issuer IS NULL THEN
            issuer := gen_random_uuid();
            INSERT INTO blockchain.wallets (id, asset, kind) VALUES (issuer, short.asset, 'issuer');
            INSERT INTO blockchain.balances (wallet_id, shard, asset, shard_count) VALUES (issuer, 0, short.asset, 1);
        END IF;
        INSERT INTO blockchain.fodi_transactions (id, kind, debit_wallet_id, credit_wallet_id, amount, reason, reference)
        VALUES (gen_random_uuid(), 'transfer', issuer, short.wallet_id, short.deficit, 'issuance',
                'V4: deficit of shard ' || short.shard);
        UPDATE blockchain.balances SET posted = posted - short.deficit WHERE wallet_id = issuer AND shard = 0;
        UPDATE blockchain.balances SET posted = posted + short.deficit
         WHERE wallet_id = short.wallet_id AND shard = short.shard;
    END LOOP;
END
$$;

UPDATE blockchain.balances b SET min_balance = 0
  FROM blockchain.wallets w
 WHERE w.id = b.wallet_id AND w.kind IN ('rewards_pool', 'fees');

-- A bounded wallet's free funds (posted beyond its holds and bound) spread evenly over its
-- shards, after the treasury funded it. Locks the shards in shard order, the lock order of
-- transfers; the caller holds shard 0 already or nothing (see ledger::pg::issuance).
CREATE FUNCTION blockchain.rebalance_shards(p_wallet uuid) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM 1 FROM blockchain.balances b WHERE b.wallet_id = p_wallet ORDER BY b.shard FOR UPDATE;
    WITH shards AS (
        SELECT b.shard, b.pending_debits + b.min_balance AS reserved,
               b.posted - b.pending_debits - b.min_balance AS free
          FROM blockchain.balances b
         WHERE b.wallet_id = p_wallet AND b.min_balance IS NOT NULL
    ), total AS (
        SELECT sum(s.free) AS free, count(*) AS shards FROM shards s
    )
    UPDATE blockchain.balances b
       SET posted = (s.reserved + div(t.free, t.shards)
                     + CASE WHEN s.shard < mod(t.free, t.shards) THEN 1 ELSE 0 END)::bigint
      FROM shards s, total t
     WHERE b.wallet_id = p_wallet AND b.shard = s.shard;
END
$fn$;

-- For a transfer its shard could not pay: takes every shard of a bounded wallet that no
-- other transaction holds (those this one holds included) and, if their free funds add up to
-- p_needed, puts p_needed on the lowest of them and spreads the rest evenly over them all (so
-- that later transfers find funds wherever they land), and returns that shard; else NULL,
-- having moved nothing. It never waits for a lock: a transaction holding one shard while
-- waiting for the others would deadlock with another doing the same.
CREATE FUNCTION blockchain.gather_shards(p_wallet uuid, p_needed bigint) RETURNS smallint
LANGUAGE plpgsql AS $fn$
DECLARE
    taken smallint[];
    target smallint;
    free numeric;
    rest numeric;
    n integer;
BEGIN
    WITH lockable AS (
        SELECT b.shard, b.posted - b.pending_debits - b.min_balance AS free
          FROM blockchain.balances b
         WHERE b.wallet_id = p_wallet AND b.min_balance IS NOT NULL
         ORDER BY b.shard
           FOR UPDATE SKIP LOCKED
    )
    SELECT array_agg(l.shard ORDER BY l.shard), min(l.shard), sum(l.free), count(*)
      INTO taken, target, free, n
      FROM lockable l;
    IF target IS NULL OR free < p_needed THEN
        RETURN NULL;
    END IF;
    rest := free - p_needed;
    UPDATE blockchain.balances b
       SET posted = (b.pending_debits + b.min_balance
                     + CASE WHEN b.shard = target THEN p_needed ELSE 0 END
                     + div(rest, n)
                     + CASE WHEN array_position(taken, b.shard) <= mod(rest, n) THEN 1 ELSE 0 END)::bigint
     WHERE b.wallet_id = p_wallet AND b.shard = ANY (taken);
    RETURN target;
END
$fn$;

DROP FUNCTION blockchain.submit_transfers(uuid[], text[], uuid[], uuid[], bigint[], uuid[], bigint[],
                                          text[], text[], jsonb[], boolean);
DROP FUNCTION blockchain.submit_transfer(uuid, uuid, uuid, bigint, text, text, jsonb);

-- A replayed item's row names who submitted the stored transfer. (An applied item's row
-- leaves it out, as it leaves out everything else the caller sent.)
ALTER TYPE blockchain.transfer_result ADD ATTRIBUTE submitted_by text;

CREATE FUNCTION blockchain.submit_transfers(
    p_ids         uuid[],
    p_kinds       text[],
    p_debits      uuid[],
    p_credits     uuid[],
    p_amounts     bigint[],
    p_pending_ids uuid[],
    p_timeouts_ms bigint[],
    p_reasons     text[],
    p_references  text[],
    p_metadata    jsonb[],
    p_linked      boolean,
    p_submitted_by text[],
    p_shard       integer
) RETURNS SETOF blockchain.transfer_result
LANGUAGE plpgsql
-- The statements' plans are built once per session: planning them anew per call would cost
-- more than running them.
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
DECLARE
    n constant integer := coalesce(cardinality(p_ids), 0);
    max_amount constant bigint := 9223372036854775807;
    min_amount constant bigint := -9223372036854775808;
    -- Reduced modulo each sharded wallet's shard count.
    hot_shard constant integer := coalesce(p_shard, floor(random() * 64)::integer);

    -- Per item, 1..n. (PL/pgSQL keeps array variables and parameters in expanded form, so
    -- the loop's element reads and writes are O(1).)
    st        text[];         -- NULL while undecided, then 'ok', 'replayed' or a failure
    code      smallint[];     -- kind: 1 transfer, 2 pending, 3 post, 4 void, 5 expire
    dbt       uuid[];         -- debit wallet (post/void/expire: the pending transfer's)
    crd       uuid[];         -- credit wallet
    amt       bigint[];       -- amount to store
    pend_amt  bigint[];       -- post/void/expire: the held amount
    pend_exp  timestamptz[];  -- post/void/expire: when the hold expires
    pend_item integer[];      -- post/void/expire of a pending created earlier in this batch
    resolved  boolean[];      -- post/void/expire: the hold was resolved before this batch
    dup_of    integer[];      -- later items with an earlier item's id: the first such item
    winner    integer[];      -- by first item of an id: the item that applied it
    side_keys integer[];      -- items' balance rows among the keys: [2i-1] debit, [2i] credit
    exp_at    timestamptz[];  -- pending: expiry to store
    f_wallet  uuid[];
    f_needed  bigint[];
    f_avail   bigint[];

    -- Balance rows the batch touches ("keys"), sorted by (wallet, shard): the lock order.
    k_wallet uuid[];
    k_shard  smallint[];
    k_posted bigint[];
    k_pdeb   bigint[];
    k_pcred  bigint[];
    k_min    bigint[];
    k_closed boolean[];
    k_net     numeric[];      -- the common batch's net change per key, and the lowest and
    k_lowest  numeric[];      -- highest running sums it passes through
    k_highest numeric[];
    locked   integer;
    assets   integer;         -- distinct assets among the common batch's balance rows

    resolved_here uuid[] := '{}';   -- pending transfers resolved by earlier items
    new_seqs      bigint[];         -- seq of the inserted transfers, ascending
    fast_fits     boolean;          -- every item of the common batch fit
    settled       boolean := false; -- the common batch was settled at once
    out_seq       bigint[];         -- per item: seq of the transfer it inserted
    failed_at     integer;
    applied       integer := 0;
    i    integer;
    j    integer;
    d    integer;
    c    integer;
    a    bigint;
    held bigint;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    IF n > 10000
       OR cardinality(p_kinds) IS DISTINCT FROM n OR cardinality(p_debits) IS DISTINCT FROM n
       OR cardinality(p_credits) IS DISTINCT FROM n OR cardinality(p_amounts) IS DISTINCT FROM n
       OR cardinality(p_pending_ids) IS DISTINCT FROM n OR cardinality(p_timeouts_ms) IS DISTINCT FROM n
       OR cardinality(p_reasons) IS DISTINCT FROM n OR cardinality(p_references) IS DISTINCT FROM n
       OR cardinality(p_metadata) IS DISTINCT FROM n OR cardinality(p_submitted_by) IS DISTINCT FROM n
       OR p_linked IS NULL OR p_shard < 0 THEN
        RAISE EXCEPTION 'submit_transfers takes 1 to 10000 items, every array of the same length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    amt := array_fill(NULL::bigint, ARRAY[n]);
    winner := array_fill(NULL::integer, ARRAY[n]);
    exp_at := array_fill(NULL::timestamptz, ARRAY[n]);
    f_wallet := array_fill(NULL::uuid, ARRAY[n]);
    f_needed := array_fill(NULL::bigint, ARRAY[n]);
    f_avail := array_fill(NULL::bigint, ARRAY[n]);

    -- 1. Items that name a pending transfer (post, void, expire) take its wallets, held amount
    --    and expiry, from the table or from an earlier item of this batch.
    SELECT array_agg(CASE s.kind WHEN 'transfer' THEN 1 WHEN 'pending' THEN 2 WHEN 'post' THEN 3
                                 WHEN 'void' THEN 4 WHEN 'expire' THEN 5 END)
      INTO code
      FROM (SELECT u.kind FROM unnest(p_kinds) WITH ORDINALITY AS u(kind, i) ORDER BY u.i) s;
    dbt := p_debits;
    crd := p_credits;
    pend_amt := array_fill(NULL::bigint, ARRAY[n]);
    pend_exp := array_fill(NULL::timestamptz, ARRAY[n]);
    pend_item := array_fill(NULL::integer, ARRAY[n]);
    resolved := array_fill(false, ARRAY[n]);
    IF 3 = ANY (code) OR 4 = ANY (code) OR 5 = ANY (code) THEN
        WITH r AS (
            SELECT u.id, u.kind, u.debit, u.credit, u.amount, u.timeout_ms, u.pending, u.i,
                   min(u.i) OVER (PARTITION BY u.id) AS first
              FROM unnest(p_ids, p_kinds, p_debits, p_credits, p_amounts, p_timeouts_ms, p_pending_ids)
                       WITH ORDINALITY AS u(id, kind, debit, credit, amount, timeout_ms, pending, i)
        ), first_pendings AS (
            SELECT r.* FROM r WHERE r.kind = 'pending' AND r.i = r.first
        )
        SELECT array_agg(s.debit), array_agg(s.credit), array_agg(s.held), array_agg(s.expires), array_agg(s.item),
               array_agg(s.resolved)
          INTO dbt, crd, pend_amt, pend_exp, pend_item, resolved
          FROM (SELECT r.i,
                       CASE WHEN r.kind IN ('post', 'void', 'expire') THEN coalesce(t.debit_wallet_id, b.debit) ELSE r.debit END AS debit,
                       CASE WHEN r.kind IN ('post', 'void', 'expire') THEN coalesce(t.credit_wallet_id, b.credit) ELSE r.credit END AS credit,
                       coalesce(t.amount, b.amount) AS held,
                       coalesce(t.expires_at, now() + b.timeout_ms * interval '1 millisecond') AS expires,
                       b.i AS item,
                       -- Resolved before this batch? A race with a concurrent resolution is
                       -- caught by the unique index on pending_id when inserting.
                       EXISTS (SELECT 1 FROM blockchain.fodi_transactions res
                                WHERE r.kind IN ('post', 'void', 'expire') AND res.pending_id = r.pending) AS resolved
                  FROM r
                  LEFT JOIN blockchain.fodi_transactions t
                         ON r.kind IN ('post', 'void', 'expire') AND t.id = r.pending AND t.kind = 'pending'
                  LEFT JOIN first_pendings b
                         ON t.id IS NULL AND r.kind IN ('post', 'void', 'expire') AND b.id = r.pending AND b.i < r.i
                 ORDER BY r.i) s;
    END IF;

    -- 2. The checks that need no table, one pass over the items.
    SELECT array_agg(x.invalid)
      INTO st
      FROM (SELECT CASE
                       WHEN r.code IS NULL THEN 'invalid_request'
                       WHEN r.code >= 3 AND r.debit IS NULL THEN 'pending_not_found'
                       WHEN r.debit IS NULL OR r.credit IS NULL THEN 'invalid_request'
                       WHEN r.code <= 2 AND (r.amount IS NULL OR r.amount <= 0) THEN 'invalid_amount'
                       WHEN r.code = 3 AND r.amount IS NOT NULL AND r.amount <= 0 THEN 'invalid_amount'
                       WHEN r.code = 2 AND (r.timeout_ms IS NULL OR r.timeout_ms <= 0) THEN 'invalid_timeout'
                       WHEN r.debit = r.credit THEN 'same_wallet'
                   END AS invalid
              FROM unnest(code, dbt, crd, p_amounts, p_timeouts_ms)
                       WITH ORDINALITY AS r(code, debit, credit, amount, timeout_ms, i)
             ORDER BY r.i) x;

    -- 3. The common batch, immediate transfers that all passed the checks above, is settled
    --    in three statements, without reading the wallets: the movement of each wallet is
    --    computed before any lock is taken; the transfers are inserted; the balances are
    --    updated in wallet order, which takes their locks in that order, each on the shard the
    --    batch posts to. The rows updated tell whether every wallet exists, is open and holds
    --    the batch's one asset, and, from the lowest and highest running sums, whether every
    --    item fit where it stood. If not, or an id existed (or came twice), the block is
    --    undone (with the locks it took) and the item-by-item path below decides.
    IF NOT (2 = ANY (code) OR 3 = ANY (code) OR 4 = ANY (code) OR 5 = ANY (code))
       AND cardinality(array_remove(st, NULL)) = 0 THEN
        BEGIN
            SELECT array_agg(x.wallet), array_agg(x.net), array_agg(x.lowest), array_agg(x.highest)
              INTO k_wallet, k_net, k_lowest, k_highest
              FROM (SELECT m.wallet, sum(m.delta) AS net, min(m.running) AS lowest, max(m.running) AS highest
                      FROM (SELECT sd.wallet, sd.delta,
                                   sum(sd.delta) OVER (PARTITION BY sd.wallet ORDER BY r.i, sd.side) AS running
                              FROM unnest(dbt, crd, p_amounts) WITH ORDINALITY AS r(debit, credit, amount, i)
                             CROSS JOIN LATERAL (VALUES (1, r.debit, -r.amount::numeric), (2, r.credit, r.amount::numeric))
                                   AS sd(side, wallet, delta)) m
                     GROUP BY m.wallet
                     ORDER BY m.wallet) x;
            -- The transfers first: inserting needs no balance lock, so the locks below are
            -- held for less time.
            WITH inserted AS (
                INSERT INTO blockchain.fodi_transactions
                       (id, kind, debit_wallet_id, credit_wallet_id, amount, reason, reference, metadata, submitted_by)
                SELECT r.id, 'transfer', r.debit, r.credit, r.amount, r.reason, r.reference, r.metadata, r.submitted_by
                  FROM unnest(p_ids, dbt, crd, p_amounts, p_reasons, p_references, p_metadata, p_submitted_by)
                           WITH ORDINALITY AS r(id, debit, credit, amount, reason, reference, metadata, submitted_by, i)
                 ORDER BY r.i
                RETURNING seq
            )
            SELECT array_agg(inserted.seq ORDER BY inserted.seq) INTO new_seqs FROM inserted;
            -- The balance rows locked in (wallet, shard) order first: the update below takes
            -- them in whatever order its join plan reads them (a sequential scan of balances,
            -- in physical order, once the plan is generic), which deadlocks against a single
            -- transfer locking the same two rows the other way round.
            PERFORM 1
               FROM blockchain.balances b
              WHERE b.wallet_id = ANY (k_wallet) AND b.shard = hot_shard % b.shard_count
              ORDER BY b.wallet_id, b.shard
                FOR UPDATE;
            WITH updated AS (
                UPDATE blockchain.balances b
                   SET posted = b.posted + k.net::bigint
                  FROM (SELECT u.* FROM unnest(k_wallet, k_net, k_lowest, k_highest) AS u(wallet, net, lowest, highest)
                         ORDER BY u.wallet) k
                 WHERE b.wallet_id = k.wallet AND b.shard = hot_shard % b.shard_count
                RETURNING b.posted - k.net AS before, b.pending_debits, b.min_balance, b.closed, b.asset,
                          k.lowest, k.highest
            )
            SELECT count(*)::integer, count(DISTINCT u.asset)::integer,
                   bool_and(NOT u.closed
                            AND u.before + u.lowest >= min_amount AND u.before + u.highest <= max_amount
                            AND (u.min_balance IS NULL OR u.before - u.pending_debits - u.min_balance + u.lowest >= 0))
              INTO locked, assets, fast_fits
              FROM updated u;
            IF locked <> cardinality(k_wallet) OR assets <> 1 OR NOT fast_fits THEN
                RAISE EXCEPTION 'not settled at once' USING ERRCODE = 'raise_exception';
            END IF;
            amt := p_amounts;
            st := array_fill('ok'::text, ARRAY[n]);
            out_seq := new_seqs;
            applied := n;
            settled := true;
        EXCEPTION WHEN raise_exception OR numeric_value_out_of_range OR check_violation OR unique_violation THEN
            -- A unique violation means an id exists already: the path below finds the replay.
            settled := false;
        END;
    END IF;

    IF NOT settled THEN
        -- 4. The wallets, and the balance rows the batch touches ("keys", numbered in
        --    (wallet, shard) order). Posted movements of a sharded wallet go to one shard per
        --    batch; holds use shard 0.
        WITH items AS (
            SELECT r.i, r.debit, r.credit,
                   coalesce(r.invalid,
                            CASE WHEN wd.id IS NULL OR wc.id IS NULL THEN 'wallet_not_found'
                                 WHEN wd.closed_at IS NOT NULL OR wc.closed_at IS NOT NULL THEN 'wallet_closed'
                                 WHEN wd.asset <> wc.asset THEN 'asset_mismatch' END) AS failure,
                   CASE WHEN r.invalid IS NOT NULL THEN NULL
                        WHEN wd.id IS NULL THEN r.debit
                        WHEN wc.id IS NULL THEN r.credit
                        WHEN wd.closed_at IS NOT NULL THEN r.debit
                        WHEN wc.closed_at IS NOT NULL THEN r.credit END AS fault_wallet,
                   CASE WHEN r.code = 1 THEN (hot_shard % wd.shard_count)::smallint ELSE 0::smallint END AS debit_shard,
                   CASE WHEN r.code = 1 THEN (hot_shard % wc.shard_count)::smallint ELSE 0::smallint END AS credit_shard
              FROM unnest(code, dbt, crd, st) WITH ORDINALITY AS r(code, debit, credit, invalid, i)
              LEFT JOIN blockchain.wallets wd ON wd.id = r.debit
              LEFT JOIN blockchain.wallets wc ON wc.id = r.credit
        ), sides AS (
            -- Two rows per item, debit then credit; balance rows numbered for the valid ones.
            SELECT c.i, sd.side, sd.wallet, sd.shard,
                   CASE WHEN c.failure IS NULL
                        THEN dense_rank() OVER (PARTITION BY c.failure IS NULL ORDER BY sd.wallet, sd.shard)::integer
                   END AS k
              FROM items c
             CROSS JOIN LATERAL (VALUES (1, c.debit, c.debit_shard), (2, c.credit, c.credit_shard)) AS sd(side, wallet, shard)
        )
        SELECT per_item.failures, per_item.fault_wallets,
               (SELECT array_agg(x.k) FROM (SELECT s.k FROM sides s ORDER BY s.i, s.side) x),
               per_key.wallets, per_key.shards
          FROM (SELECT array_agg(x.failure) AS failures, array_agg(x.fw) AS fault_wallets
                  FROM (SELECT c.failure, c.fault_wallet AS fw FROM items c ORDER BY c.i) x) per_item,
               (SELECT array_agg(x.wallet) AS wallets, array_agg(x.shard) AS shards
                  FROM (SELECT DISTINCT s.k, s.wallet, s.shard FROM sides s WHERE s.k IS NOT NULL ORDER BY s.k) x) per_key
          INTO st, f_wallet, side_keys, k_wallet, k_shard;

        -- Later items repeating an earlier item's id.
        SELECT array_agg(x.dup)
          INTO dup_of
          FROM (SELECT CASE WHEN min(u.i) OVER (PARTITION BY u.id) < u.i
                            THEN min(u.i) OVER (PARTITION BY u.id) END AS dup, u.i
                  FROM unnest(p_ids) WITH ORDINALITY AS u(id, i)
                 ORDER BY u.i) x;

        -- 5. Ids that exist already: the same transfer again (a replay) or a conflict, whatever
        --    the checks said. A batch racing this one with the same id is caught by the primary
        --    key when inserting; the caller then submits again and gets the replay.
        SELECT array_agg(x.status)
          INTO st
          FROM (SELECT CASE
                           WHEN t.id IS NULL THEN r.failure
                           WHEN t.kind = r.kind
                                AND t.debit_wallet_id = r.debit AND t.credit_wallet_id = r.credit
                                AND t.amount = CASE WHEN r.kind IN ('void', 'expire') THEN r.held
                                                    ELSE coalesce(r.amount, r.held) END
                                AND t.pending_id IS NOT DISTINCT FROM r.pending
                                AND t.reason IS NOT DISTINCT FROM r.reason
                                AND t.reference IS NOT DISTINCT FROM r.reference
                                AND t.metadata IS NOT DISTINCT FROM r.metadata
                                AND (r.kind <> 'pending'
                                     OR t.expires_at - t.created_at = r.timeout_ms * interval '1 millisecond')
                           THEN 'replayed'
                           ELSE 'id_conflict'
                       END AS status
                  FROM unnest(p_ids, p_kinds, dbt, crd, p_amounts, pend_amt, p_pending_ids, p_timeouts_ms,
                              p_reasons, p_references, p_metadata, st)
                           WITH ORDINALITY AS r(id, kind, debit, credit, amount, held, pending, timeout_ms,
                                                reason, reference, metadata, failure, i)
                  LEFT JOIN blockchain.fodi_transactions t ON t.id = r.id
                 ORDER BY r.i) x;

        -- 6. Lock the balance rows in (wallet, shard) order, and read them as they are now.
        IF k_wallet IS NOT NULL THEN
            SELECT count(*)::integer, array_agg(l.posted), array_agg(l.pending_debits),
                   array_agg(l.pending_credits), array_agg(l.min_balance), array_agg(l.closed)
              INTO locked, k_posted, k_pdeb, k_pcred, k_min, k_closed
              FROM (SELECT b.posted, b.pending_debits, b.pending_credits, b.min_balance, b.closed
                      FROM unnest(k_wallet, k_shard) AS k(wallet, shard)
                      JOIN blockchain.balances b ON b.wallet_id = k.wallet AND b.shard = k.shard
                     ORDER BY b.wallet_id, b.shard
                       FOR UPDATE OF b) l;
            IF locked <> cardinality(k_wallet) THEN
                RAISE EXCEPTION 'submit_transfers: % balance rows expected, % found', cardinality(k_wallet), locked
                    USING ERRCODE = 'internal_error';
            END IF;
        END IF;

        -- 7. Apply the items in order to the balances held in memory.
        FOR i IN 1..n LOOP
            -- A later item with the id of an earlier one is judged as if the earlier had been
            -- submitted first: if that one was applied, this is a replay or a conflict; if not,
            -- the id is still free and this item is evaluated like any other.
            j := winner[coalesce(dup_of[i], i)];
            IF st[i] IS NULL AND j IS NOT NULL THEN
                st[i] := CASE WHEN p_kinds[i] = p_kinds[j]
                                   AND dbt[i] IS NOT DISTINCT FROM dbt[j] AND crd[i] IS NOT DISTINCT FROM crd[j]
                                   AND p_amounts[i] IS NOT DISTINCT FROM p_amounts[j]
                                   AND p_pending_ids[i] IS NOT DISTINCT FROM p_pending_ids[j]
                                   AND p_timeouts_ms[i] IS NOT DISTINCT FROM p_timeouts_ms[j]
                                   AND p_reasons[i] IS NOT DISTINCT FROM p_reasons[j]
                                   AND p_references[i] IS NOT DISTINCT FROM p_references[j]
                                   AND p_metadata[i] IS NOT DISTINCT FROM p_metadata[j]
                              THEN 'replayed' ELSE 'id_conflict' END;
            END IF;

            IF st[i] IS NULL THEN
                d := side_keys[2 * i - 1];
                c := side_keys[2 * i];
                IF code[i] <= 2 THEN
                    -- transfer (1) or pending (2): spend from the debit wallet's available funds.
                    a := p_amounts[i];
                    IF k_closed[d] OR k_closed[c] THEN
                        -- Closed while this batch waited for the lock.
                        st[i] := 'wallet_closed';
                        f_wallet[i] := CASE WHEN k_closed[d] THEN dbt[i] ELSE crd[i] END;
                    ELSIF k_min[d] IS NOT NULL AND k_posted[d]::numeric - k_pdeb[d] - k_min[d] < a THEN
                        st[i] := 'insufficient_funds';
                        f_wallet[i] := dbt[i];
                        f_needed[i] := a;
                        f_avail[i] := least(greatest(k_posted[d]::numeric - k_pdeb[d] - k_min[d], 0), max_amount)::bigint;
                    ELSIF code[i] = 1 AND (k_posted[c] > max_amount - a OR k_posted[d] < min_amount + a) THEN
                        st[i] := 'overflow';
                        f_wallet[i] := CASE WHEN k_posted[c] > max_amount - a THEN crd[i] ELSE dbt[i] END;
                    ELSIF code[i] = 2 AND (k_pdeb[d] > max_amount - a OR k_pcred[c] > max_amount - a) THEN
                        st[i] := 'overflow';
                        f_wallet[i] := CASE WHEN k_pdeb[d] > max_amount - a THEN dbt[i] ELSE crd[i] END;
                    ELSIF code[i] = 1 THEN
                        k_posted[d] := k_posted[d] - a;
                        k_posted[c] := k_posted[c] + a;
                        amt[i] := a;
                    ELSE
                        k_pdeb[d] := k_pdeb[d] + a;
                        k_pcred[c] := k_pcred[c] + a;
                        amt[i] := a;
                        exp_at[i] := now() + p_timeouts_ms[i] * interval '1 millisecond';
                    END IF;
                ELSE
                    -- post (3), void (4) or expire (5) of a hold.
                    held := pend_amt[i];
                    a := CASE WHEN code[i] = 3 THEN coalesce(p_amounts[i], held) ELSE held END;
                    IF pend_item[i] IS NOT NULL AND st[pend_item[i]] IS DISTINCT FROM 'ok' THEN
                        st[i] := 'pending_not_found';
                    ELSIF code[i] <> 5 AND pend_exp[i] <= now() THEN
                        -- Lapsed, whether or not the expiry job has released it yet.
                        st[i] := 'pending_expired';
                    ELSIF resolved[i] OR p_pending_ids[i] = ANY (resolved_here) THEN
                        st[i] := 'pending_already_resolved';
                    ELSIF code[i] = 5 AND pend_exp[i] > now() THEN
                        st[i] := 'pending_not_expired';
                    ELSIF a > held THEN
                        st[i] := 'amount_exceeds_pending';
                        f_needed[i] := a;
                        f_avail[i] := held;
                    ELSIF code[i] = 3 AND (k_posted[c] > max_amount - a OR k_posted[d] < min_amount + a) THEN
                        st[i] := 'overflow';
                        f_wallet[i] := CASE WHEN k_posted[c] > max_amount - a THEN crd[i] ELSE dbt[i] END;
                    ELSE
                        k_pdeb[d] := k_pdeb[d] - held;
                        k_pcred[c] := k_pcred[c] - held;
                        IF code[i] = 3 THEN
                            k_posted[d] := k_posted[d] - a;
                            k_posted[c] := k_posted[c] + a;
                        END IF;
                        amt[i] := a;
                        resolved_here := resolved_here || p_pending_ids[i];
                    END IF;
                END IF;
                IF st[i] IS NULL THEN
                    st[i] := 'ok';
                    applied := applied + 1;
                    winner[coalesce(dup_of[i], i)] := i;
                END IF;
            END IF;

            IF p_linked AND st[i] NOT IN ('ok', 'replayed') THEN
                failed_at := i;
                EXIT;
            END IF;
        END LOOP;


        IF failed_at IS NOT NULL THEN
            FOR i IN 1..n LOOP
                IF i <> failed_at AND st[i] IS DISTINCT FROM 'replayed' THEN
                    st[i] := 'linked_event_failed';
                END IF;
            END LOOP;
            applied := 0;
        END IF;

        -- 8. Write, in one statement: the transfers in item order (so seq follows it), the holds
        --    opened and released, the balances.
        IF applied > 0 THEN
            WITH inserted AS (
                INSERT INTO blockchain.fodi_transactions
                       (id, kind, debit_wallet_id, credit_wallet_id, amount, pending_id, expires_at, reason, reference, metadata,
                        submitted_by)
                SELECT r.id, r.kind, r.debit, r.credit, r.amount, r.pending, r.expires, r.reason, r.reference, r.metadata,
                       r.submitted_by
                  FROM unnest(p_ids, p_kinds, dbt, crd, amt, p_pending_ids, exp_at, p_reasons, p_references, p_metadata,
                              p_submitted_by, st)
                           WITH ORDINALITY AS r(id, kind, debit, credit, amount, pending, expires, reason, reference, metadata,
                                                submitted_by, status, i)
                 WHERE r.status = 'ok'
                 ORDER BY r.i
                RETURNING seq
            ), opened AS (
                INSERT INTO blockchain.pending_holds (pending_id, expires_at)
                SELECT r.id, r.expires
                  FROM unnest(p_ids, code, exp_at, st) AS r(id, code, expires, status)
                 WHERE r.status = 'ok' AND r.code = 2 AND NOT (r.id = ANY (resolved_here))
                RETURNING 1
            ), released AS (
                DELETE FROM blockchain.pending_holds h WHERE h.pending_id = ANY (resolved_here)
                RETURNING 1
            ), balanced AS (
                UPDATE blockchain.balances b
                   SET posted = k.posted, pending_debits = k.pdeb, pending_credits = k.pcred
                  FROM unnest(k_wallet, k_shard, k_posted, k_pdeb, k_pcred) AS k(wallet, shard, posted, pdeb, pcred)
                 WHERE b.wallet_id = k.wallet AND b.shard = k.shard
                   AND (b.posted, b.pending_debits, b.pending_credits) IS DISTINCT FROM (k.posted, k.pdeb, k.pcred)
                RETURNING 1
            )
            SELECT array_agg(inserted.seq ORDER BY inserted.seq) INTO new_seqs FROM inserted;

            -- The inserted rows took their seq in item order: the k-th applied item has the k-th.
            out_seq := array_fill(NULL::bigint, ARRAY[n]);
            j := 0;
            FOR i IN 1..n LOOP
                IF st[i] = 'ok' THEN
                    j := j + 1;
                    out_seq[i] := new_seqs[j];
                END IF;
            END LOOP;
        END IF;
    END IF;

    -- 9. One row per item. An applied item's row carries what the engine decided (position,
    --    wallets, amount, expiry, time) and leaves out what the caller sent (id, pending id,
    --    reason, reference, metadata); a replayed item's row is the stored transfer, whole.
    IF 'replayed' = ANY (st) THEN
        RETURN QUERY
        SELECT r.i::integer, r.status, r.fw, r.fn, r.fa,
               t.id,
               CASE WHEN r.status = 'ok' THEN (pg_current_xact_id()::text)::bigint ELSE t.tx_id END,
               coalesce(t.seq, r.seq),
               coalesce(t.kind, CASE WHEN r.status = 'ok' THEN r.kind END),
               coalesce(t.debit_wallet_id, CASE WHEN r.status = 'ok' THEN r.debit END),
               coalesce(t.credit_wallet_id, CASE WHEN r.status = 'ok' THEN r.credit END),
               coalesce(t.amount, CASE WHEN r.status = 'ok' THEN r.amount END),
               t.pending_id,
               CASE WHEN r.status = 'ok' THEN r.expires ELSE t.expires_at END,
               t.reason, t.reference, t.metadata,
               CASE WHEN r.status = 'ok' THEN now() ELSE t.created_at END,
               t.submitted_by
          FROM unnest(p_ids, st, f_wallet, f_needed, f_avail, out_seq, p_kinds, dbt, crd, amt, exp_at)
                   WITH ORDINALITY AS r(id, status, fw, fn, fa, seq, kind, debit, credit, amount, expires, i)
          LEFT JOIN blockchain.fodi_transactions t ON r.status = 'replayed' AND t.id = r.id
         ORDER BY r.i;
    ELSE
        RETURN QUERY
        SELECT r.i::integer, r.status, r.fw, r.fn, r.fa,
               NULL::uuid,
               CASE WHEN r.status = 'ok' THEN (pg_current_xact_id()::text)::bigint END,
               r.seq,
               CASE WHEN r.status = 'ok' THEN r.kind END,
               CASE WHEN r.status = 'ok' THEN r.debit END,
               CASE WHEN r.status = 'ok' THEN r.credit END,
               CASE WHEN r.status = 'ok' THEN r.amount END,
               NULL::uuid,
               CASE WHEN r.status = 'ok' THEN r.expires END,
               NULL::text, NULL::text, NULL::jsonb,
               CASE WHEN r.status = 'ok' THEN now() END,
               NULL::text
          FROM unnest(st, f_wallet, f_needed, f_avail, out_seq, p_kinds, dbt, crd, amt, exp_at)
                   WITH ORDINALITY AS r(status, fw, fn, fa, seq, kind, debit, credit, amount, expires, i)
         ORDER BY r.i;
    END IF;
END
$fn$;

CREATE FUNCTION blockchain.submit_transfer(
    p_id        uuid,
    p_debit     uuid,
    p_credit    uuid,
    p_amount    bigint,
    p_reason    text,
    p_reference text,
    p_metadata  jsonb,
    p_submitted_by text,
    p_shard     integer
) RETURNS SETOF blockchain.transfer_result
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    max_amount constant bigint := 9223372036854775807;
    min_amount constant bigint := -9223372036854775808;
    hot_shard constant integer := coalesce(p_shard, floor(random() * 64)::integer);
    result blockchain.transfer_result;
    existing blockchain.fodi_transactions;
    debit_found boolean;
    credit_found boolean;
    debit_closed boolean;
    credit_closed boolean;
    debit_asset text;
    credit_asset text;
    debit_shard smallint;
    credit_shard smallint;
    debit_posted bigint;
    debit_held bigint;
    debit_min bigint;
    credit_posted bigint;
BEGIN
    result.item := 1;
    IF p_id IS NULL OR p_debit IS NULL OR p_credit IS NULL OR p_shard < 0 THEN
        result.status := 'invalid_request';
    ELSIF p_amount IS NULL OR p_amount <= 0 THEN
        result.status := 'invalid_amount';
    ELSIF p_debit = p_credit THEN
        result.status := 'same_wallet';
    ELSE
        -- 1. Both balance rows, locked in (wallet, shard) order, with what the checks need.
        --    (One aggregate over the two rows: cheaper than a cursor loop over them.)
        SELECT coalesce(bool_or(l.wallet_id = p_debit), false), coalesce(bool_or(l.wallet_id = p_credit), false),
               bool_or(l.closed) FILTER (WHERE l.wallet_id = p_debit),
               bool_or(l.closed) FILTER (WHERE l.wallet_id = p_credit),
               min(l.asset) FILTER (WHERE l.wallet_id = p_debit), min(l.asset) FILTER (WHERE l.wallet_id = p_credit),
               min(l.shard) FILTER (WHERE l.wallet_id = p_debit), min(l.shard) FILTER (WHERE l.wallet_id = p_credit),
               min(l.posted) FILTER (WHERE l.wallet_id = p_debit), min(l.pending_debits) FILTER (WHERE l.wallet_id = p_debit),
               min(l.min_balance) FILTER (WHERE l.wallet_id = p_debit), min(l.posted) FILTER (WHERE l.wallet_id = p_credit)
          INTO debit_found, credit_found, debit_closed, credit_closed, debit_asset, credit_asset,
               debit_shard, credit_shard, debit_posted, debit_held, debit_min, credit_posted
          FROM (SELECT b.wallet_id, b.shard, b.posted, b.pending_debits, b.min_balance, b.closed, b.asset
                  FROM blockchain.balances b
                 WHERE b.wallet_id IN (p_debit, p_credit) AND b.shard = hot_shard % b.shard_count
                 ORDER BY b.wallet_id, b.shard
                   FOR UPDATE) l;

        -- 2. The checks of the batch engine, in its order.
        IF NOT debit_found OR NOT credit_found THEN
            result.status := 'wallet_not_found';
            result.fact_wallet := CASE WHEN debit_found THEN p_credit ELSE p_debit END;
        ELSIF debit_closed OR credit_closed THEN
            result.status := 'wallet_closed';
            result.fact_wallet := CASE WHEN debit_closed THEN p_debit ELSE p_credit END;
        ELSIF debit_asset <> credit_asset THEN
            result.status := 'asset_mismatch';
        ELSIF debit_min IS NOT NULL AND debit_posted::numeric - debit_held - debit_min < p_amount THEN
            result.status := 'insufficient_funds';
            result.fact_wallet := p_debit;
            result.fact_needed := p_amount;
            result.fact_available := least(greatest(debit_posted::numeric - debit_held - debit_min, 0), max_amount)::bigint;
        ELSIF credit_posted > max_amount - p_amount OR debit_posted < min_amount + p_amount THEN
            result.status := 'overflow';
            result.fact_wallet := CASE WHEN credit_posted > max_amount - p_amount THEN p_credit ELSE p_debit END;
        END IF;
    END IF;

    IF result.status IS NULL THEN
        -- 3. Write the transfer and both balances in one statement. An id that exists already
        --    inserts nothing, and then the balances are not touched either.
        WITH inserted AS (
            INSERT INTO blockchain.fodi_transactions
                   (id, kind, debit_wallet_id, credit_wallet_id, amount, reason, reference, metadata, submitted_by)
            VALUES (p_id, 'transfer', p_debit, p_credit, p_amount, p_reason, p_reference, p_metadata, p_submitted_by)
            ON CONFLICT (id) DO NOTHING
            RETURNING tx_id, seq, created_at
        ), balanced AS (
            UPDATE blockchain.balances b
               SET posted = b.posted + CASE WHEN b.wallet_id = p_debit THEN -p_amount ELSE p_amount END
              FROM inserted
             WHERE (b.wallet_id = p_debit AND b.shard = debit_shard) OR (b.wallet_id = p_credit AND b.shard = credit_shard)
            RETURNING 1
        )
        SELECT inserted.tx_id, inserted.seq, inserted.created_at INTO result.tx_id, result.seq, result.created_at
          FROM inserted;
        IF FOUND THEN
            result.status := 'ok';
            result.id := p_id;
            result.kind := 'transfer';
            result.debit_wallet_id := p_debit;
            result.credit_wallet_id := p_credit;
            result.amount := p_amount;
            result.reason := p_reason;
            result.reference := p_reference;
            result.metadata := p_metadata;
            RETURN NEXT result;
            RETURN;
        END IF;
    END IF;

    -- 4. A check failed, or the id exists: a stored transfer with this id decides the answer
    --    (the same fields: a replay; other fields: a conflict), whatever the checks said.
    SELECT t.* INTO existing FROM blockchain.fodi_transactions t WHERE t.id = p_id;
    IF existing.id IS NOT NULL THEN
        result := NULL;
        result.item := 1;
        IF existing.kind = 'transfer' AND existing.debit_wallet_id = p_debit
           AND existing.credit_wallet_id = p_credit AND existing.amount = p_amount
           AND existing.reason IS NOT DISTINCT FROM p_reason AND existing.reference IS NOT DISTINCT FROM p_reference
           AND existing.metadata IS NOT DISTINCT FROM p_metadata THEN
            result.status := 'replayed';
            result.id := existing.id;
            result.tx_id := existing.tx_id;
            result.seq := existing.seq;
            result.kind := existing.kind;
            result.debit_wallet_id := existing.debit_wallet_id;
            result.credit_wallet_id := existing.credit_wallet_id;
            result.amount := existing.amount;
            result.reason := existing.reason;
            result.reference := existing.reference;
            result.metadata := existing.metadata;
            result.created_at := existing.created_at;
            result.submitted_by := existing.submitted_by;
        ELSE
            result.status := 'id_conflict';
        END IF;
    ELSIF result.status IS NULL THEN
        -- Not inserted, yet not there: only a concurrent insert that rolled back between the two
        -- statements can do this. Report it as a retryable serialisation failure.
        RAISE EXCEPTION 'transfer % vanished while being submitted', p_id USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN NEXT result;
END
$fn$;

GRANT EXECUTE ON FUNCTION blockchain.submit_transfers(uuid[], text[], uuid[], uuid[], bigint[], uuid[], bigint[],
                                                      text[], text[], jsonb[], boolean, text[], integer) TO fodi_ledger;
GRANT EXECUTE ON FUNCTION blockchain.submit_transfer(uuid, uuid, uuid, bigint, text, text, jsonb, text, integer)
    TO fodi_ledger;
GRANT EXECUTE ON FUNCTION blockchain.rebalance_shards(uuid) TO fodi_ledger;
GRANT EXECUTE ON FUNCTION blockchain.gather_shards(uuid, bigint) TO fodi_ledger;
