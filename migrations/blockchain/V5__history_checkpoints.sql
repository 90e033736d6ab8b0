-- History checkpoints: a deep statement page and a balance at a past moment read a bounded
-- number of a wallet's entries, however long its history.
--
-- A checkpoint holds a wallet's posted balance through an entry (a seq). It may only count a
-- prefix of the history no transaction can still add to, and seq order is not commit order:
-- a transaction can draw seq 10 and commit after another committed seq 11. The prefix is
-- settled with a mark. `advance_history` reads the last seq drawn (L), then takes a
-- transaction id of its own (X). A transfer's transaction holds its id before it draws a seq
-- (tx_id is a column before seq, and the engine locks balances first), so every transaction
-- that drew a seq <= L has an id < X. Once no transaction up to X is running (snapshot xmin
-- > X), every entry with seq <= L is committed or gone for good. (A snapshot's xmax would not
-- do for X: it is the newest completed id plus one, and ids above it may already be running.)
--
-- The settled prefix is cut into segments. A segment also says when its entries were drawn
-- (each before `marked_at`, read after L) and, for the balance at a moment, the earliest
-- `created_at` (a transaction's start) of any entry in it or after it: past the first segment
-- whose later entries all started after a moment, none counts for that moment.

CREATE TABLE blockchain.history_horizon (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- Entries with seq <= settled_seq are settled and counted in the checkpoints.
    settled_seq bigint NOT NULL DEFAULT 0,
    -- The pending mark: the last seq drawn, a transaction id assigned after it was read, and
    -- a time read after it. NULL when no mark is pending.
    mark_seq    bigint,
    mark_xid    bigint,
    mark_at     timestamptz
);
INSERT INTO blockchain.history_horizon DEFAULT VALUES;

CREATE TABLE blockchain.history_segments (
    -- The segment is (lower_seq, upper_seq]: the settled prefix grows one segment at a time.
    upper_seq   bigint PRIMARY KEY,
    lower_seq   bigint NOT NULL,
    -- Every seq of the segment was drawn before this time.
    marked_at   timestamptz NOT NULL,
    -- The earliest created_at of the entries of this segment and of every later one
    -- ('infinity' when there are none): it never decreases from one segment to the next.
    later_min_created_at timestamptz NOT NULL
);
CREATE INDEX history_segments_marked_at_idx ON blockchain.history_segments (marked_at, upper_seq);
CREATE INDEX history_segments_later_idx ON blockchain.history_segments (later_min_created_at, upper_seq);

CREATE TABLE blockchain.wallet_checkpoints (
    wallet_id uuid NOT NULL,
    -- The wallet's posted balance through its entry `seq` (the sum of its posted changes).
    seq       bigint NOT NULL,
    posted    bigint NOT NULL,
    -- The entries since the wallet's previous checkpoint: a wallet's newest checkpoint moves
    -- forward until it counts `every` entries, then stays, so consecutive checkpoints are at
    -- most that many entries apart.
    entries   integer NOT NULL,
    PRIMARY KEY (wallet_id, seq)
);

-- The settling step reads the entries of a seq range. Rows are appended in seq order, so a
-- block range index finds them at almost no cost to each transfer. A range of pages not
-- summarised yet is read whole by every scan: autosummarize has autovacuum summarise each
-- range once it is full, so only the newest stays unsummarised.
CREATE INDEX fodi_transactions_seq_brin ON blockchain.fodi_transactions USING brin (seq)
    WITH (autosummarize = on);

-- Settles what can be settled and returns how many seqs it settled (at most p_max_seqs);
-- 0 when nothing was final yet. Takes a new mark whenever none is pending. Another caller
-- running at the same time returns 0 at once. Must run at READ COMMITTED, in a transaction
-- of its own (its snapshot must be newer than the mark it checks).
CREATE FUNCTION blockchain.advance_history(p_max_seqs bigint, p_every integer DEFAULT 1000)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    h        blockchain.history_horizon;
    last_seq bigint;
    upto     bigint;
    earliest timestamptz;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed'
       OR pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'advance_history must run at read committed, in a transaction of its own'
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    IF p_max_seqs < 1 OR p_every < 1 THEN
        RAISE EXCEPTION 'p_max_seqs and p_every must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The last seq drawn, read before this transaction has an id: the row lock below gives
    -- it one, which the mark needs to be later than the seq.
    last_seq := coalesce(pg_sequence_last_value(
        pg_get_serial_sequence('blockchain.fodi_transactions', 'seq')::regclass), 0);
    SELECT * INTO h FROM blockchain.history_horizon FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0; -- another runner holds it
    END IF;

    IF h.mark_seq IS NULL THEN
        h.mark_seq := last_seq;
        h.mark_xid := (pg_current_xact_id()::text)::bigint;
        h.mark_at := clock_timestamp();
        UPDATE blockchain.history_horizon
           SET mark_seq = h.mark_seq, mark_xid = h.mark_xid, mark_at = h.mark_at;
    END IF;
    IF h.mark_seq <= h.settled_seq THEN
        UPDATE blockchain.history_horizon SET mark_seq = NULL, mark_xid = NULL, mark_at = NULL;
        RETURN 0;
    END IF;
    IF (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint <= h.mark_xid THEN
        RETURN 0; -- a transaction that may have drawn a seq below the mark still runs
    END IF;

    upto := least(h.mark_seq, h.settled_seq + p_max_seqs);
    WITH entry AS (
        SELECT t.seq, side.wallet, side.change
          FROM blockchain.fodi_transactions t
         CROSS JOIN LATERAL (VALUES
                (t.debit_wallet_id, CASE WHEN t.kind IN ('transfer', 'post') THEN -t.amount ELSE 0 END),
                (t.credit_wallet_id, CASE WHEN t.kind IN ('transfer', 'post') THEN t.amount ELSE 0 END))
               AS side(wallet, change)
         WHERE t.seq > h.settled_seq AND t.seq <= upto
    ), numbered AS (
        SELECT e.wallet, e.seq,
               row_number() OVER running AS n,
               sum(e.change) OVER running AS change_so_far,
               count(*) OVER (PARTITION BY e.wallet) AS total
          FROM entry e
        WINDOW running AS (PARTITION BY e.wallet ORDER BY e.seq)
    ), base AS (
        -- Each touched wallet's newest checkpoint; it moves on while it counts under p_every.
        SELECT w.wallet, coalesce(c.posted, 0) AS posted,
               CASE WHEN c.entries < p_every THEN c.entries ELSE 0 END AS carried,
               CASE WHEN c.entries < p_every THEN c.seq END AS open_seq
          FROM (SELECT DISTINCT wallet FROM numbered) w
          LEFT JOIN LATERAL (SELECT c.seq, c.posted, c.entries FROM blockchain.wallet_checkpoints c
                              WHERE c.wallet_id = w.wallet ORDER BY c.seq DESC LIMIT 1) c ON true
    ), moved AS (
        DELETE FROM blockchain.wallet_checkpoints c USING base b
         WHERE c.wallet_id = b.wallet AND c.seq = b.open_seq
    )
    INSERT INTO blockchain.wallet_checkpoints (wallet_id, seq, posted, entries)
    SELECT n.wallet, n.seq, b.posted + n.change_so_far, ((b.carried + n.n - 1) % p_every) + 1
      FROM numbered n JOIN base b USING (wallet)
     WHERE (b.carried + n.n) % p_every = 0 OR n.n = n.total;

    SELECT min(t.created_at) INTO earliest FROM blockchain.fodi_transactions t
     WHERE t.seq > h.settled_seq AND t.seq <= upto;
    earliest := coalesce(earliest, 'infinity');
    UPDATE blockchain.history_segments SET later_min_created_at = earliest
     WHERE later_min_created_at > earliest;
    INSERT INTO blockchain.history_segments (upper_seq, lower_seq, marked_at, later_min_created_at)
    VALUES (upto, h.settled_seq, h.mark_at, earliest);

    IF upto = h.mark_seq THEN
        UPDATE blockchain.history_horizon
           SET settled_seq = upto, mark_seq = NULL, mark_xid = NULL, mark_at = NULL;
    ELSE
        UPDATE blockchain.history_horizon SET settled_seq = upto;
    END IF;
    RETURN upto - h.settled_seq;
END $$;

GRANT SELECT, INSERT, UPDATE, DELETE
   ON blockchain.history_horizon, blockchain.history_segments, blockchain.wallet_checkpoints
   TO fodi_ledger;
GRANT EXECUTE ON FUNCTION blockchain.advance_history(bigint, integer) TO fodi_ledger;
DO $$ BEGIN
    -- Reading the last seq drawn needs the identity sequence itself.
    EXECUTE format('GRANT SELECT ON SEQUENCE %s TO fodi_ledger',
                   pg_get_serial_sequence('blockchain.fodi_transactions', 'seq'));
END $$;
