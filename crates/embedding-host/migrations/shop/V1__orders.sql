-- Set `shop`, schema `shop`: the embedding host's own table. The migration runner creates the
-- schema with the set's history table (shop.refinery_schema_history) before this file runs.
--
-- An order and the ledger transfer that pays it are written in one transaction, so a row here
-- always has its payment in blockchain.fodi_transactions (id = payment_id) and vice versa.
-- No foreign key to the ledger's table: the ledger's transfers carry none either (a key share
-- lock per insert on the busiest rows), and the transaction keeps the two together.

CREATE TABLE shop.orders (
    id          uuid PRIMARY KEY,
    -- The customer: public.users is the core backend's (set `core`, or the host's own).
    customer_id uuid NOT NULL REFERENCES public.users (id),
    -- FODI units, as the ledger counts them (1 FODI = 1_000_000_000 units).
    total_units bigint NOT NULL CONSTRAINT orders_total_units_positive CHECK (total_units > 0),
    payment_id  uuid NOT NULL CONSTRAINT orders_payment_id_key UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_id_idx ON shop.orders (customer_id, created_at DESC);
