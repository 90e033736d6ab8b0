-- Set `ai`, schema `ai`: the AI assistant's response cache, conversations, memory facts and
-- learning data. Every row belongs to one user: keys and indexes lead with user_id, and
-- deleting the user (or `forget_user`) removes all of it.

DO $$
BEGIN
    -- Group roles are cluster-wide: another database of the cluster may have created them,
    -- possibly at this very moment, hence the existence check and the exception handler.
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fodi_ai') THEN
        CREATE ROLE fodi_ai NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fodi_readonly') THEN
        CREATE ROLE fodi_readonly NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

-- btree_gin ships with PostgreSQL (contrib) and is trusted: a database owner may create it.
-- It may exist already (another set, an administrator): then its schema is wherever it is.
CREATE EXTENSION IF NOT EXISTS btree_gin SCHEMA ai;

CREATE FUNCTION ai.set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TABLE ai.cache_entries (
    user_id     uuid NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
    cache_key   text NOT NULL CONSTRAINT cache_entries_key_length CHECK (length(cache_key) BETWEEN 1 AND 512),
    value       jsonb NOT NULL,
    -- NULL: never expires. Readers compare with now(), so an expired entry is never served
    -- even before cleanup has removed it.
    expires_at  timestamptz,
    -- When set, a hit moves expires_at to (hit time + sliding_ttl).
    sliding_ttl interval CONSTRAINT cache_entries_sliding_ttl_positive CHECK (sliding_ttl > interval '0'),
    hit_count   bigint NOT NULL DEFAULT 0 CONSTRAINT cache_entries_hit_count_not_negative CHECK (hit_count >= 0),
    last_hit_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, cache_key)
-- Room in each page for the batched hit-count updates to stay on the page (HOT updates: no
-- new index entries), as they touch no indexed column.
) WITH (fillfactor = 80);
CREATE INDEX cache_entries_expires_at_idx ON ai.cache_entries (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE ai.conversations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
    title           text CONSTRAINT conversations_title_length CHECK (length(title) <= 500),
    metadata        jsonb NOT NULL DEFAULT '{}'
                    CONSTRAINT conversations_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    -- Also the sequence number of the last message: appending increments it under the row lock.
    message_count   integer NOT NULL DEFAULT 0
                    CONSTRAINT conversations_message_count_not_negative CHECK (message_count >= 0),
    last_message_at timestamptz,
    deleted_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- The target of the messages' foreign key, which ties each message to its conversation's user.
    CONSTRAINT conversations_user_id_id_key UNIQUE (user_id, id)
);
-- Not partial: listing skips soft-deleted rows, but purge and forget_user must find them too.
CREATE INDEX conversations_user_id_updated_at_idx ON ai.conversations (user_id, updated_at DESC);

CREATE TABLE ai.conversation_messages (
    conversation_id uuid NOT NULL,
    seq             integer NOT NULL CONSTRAINT conversation_messages_seq_positive CHECK (seq > 0),
    -- The conversation's user, so that forget_user and retention can scope by user directly;
    -- the foreign key below keeps it equal to the conversation's. Reads go through the
    -- conversation (checked against the caller) and need no filter on it.
    user_id         uuid NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
    role            text NOT NULL
                    CONSTRAINT conversation_messages_role_known CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content         text NOT NULL,
    token_count     integer NOT NULL DEFAULT 0
                    CONSTRAINT conversation_messages_token_count_not_negative CHECK (token_count >= 0),
    metadata        jsonb NOT NULL DEFAULT '{}'
                    CONSTRAINT conversation_messages_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, seq),
    CONSTRAINT conversation_messages_conversation_fkey FOREIGN KEY (user_id, conversation_id)
        REFERENCES ai.conversations (user_id, id) ON DELETE CASCADE
);
-- For forget_user, and for both foreign keys' checks (the conversation's and the user's).
CREATE INDEX conversation_messages_user_id_conversation_id_idx ON ai.conversation_messages (user_id, conversation_id);
-- Retention removes the oldest messages first.
CREATE INDEX conversation_messages_created_at_idx ON ai.conversation_messages (created_at);
-- Purge finds conversations deleted long enough ago.
CREATE INDEX conversations_deleted_at_idx ON ai.conversations (deleted_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE ai.memory_facts (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
    fact_key          text NOT NULL CONSTRAINT memory_facts_key_length CHECK (length(fact_key) BETWEEN 1 AND 256),
    content           text NOT NULL,
    category          text CONSTRAINT memory_facts_category_length CHECK (length(category) BETWEEN 1 AND 64),
    confidence        real NOT NULL DEFAULT 0.5
                      CONSTRAINT memory_facts_confidence_range CHECK (confidence BETWEEN 0 AND 1),
    observation_count integer NOT NULL DEFAULT 1
                      CONSTRAINT memory_facts_observation_count_positive CHECK (observation_count > 0),
    source            text NOT NULL DEFAULT 'conversation',
    metadata          jsonb NOT NULL DEFAULT '{}'
                      CONSTRAINT memory_facts_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    expires_at        timestamptz,
    -- The 'simple' configuration does not stem: users write in many languages.
    search            tsvector GENERATED ALWAYS AS
                      (to_tsvector('simple'::regconfig, fact_key || ' ' || content)) STORED,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT memory_facts_user_key UNIQUE (user_id, fact_key)
);
-- Every search is one user's: a GIN index over (user_id, search) intersects the user's entries
-- with the words' inside one index scan (btree_gin supplies GIN support for uuid). A GIN index
-- over the words alone would fetch every user's matches of a word and discard all but one
-- user's: 13 times slower over a million facts of 10,000 users.
CREATE INDEX memory_facts_user_search_idx ON ai.memory_facts USING gin (user_id, search);
CREATE INDEX memory_facts_metadata_idx ON ai.memory_facts USING gin (metadata jsonb_path_ops);
CREATE INDEX memory_facts_user_category_idx ON ai.memory_facts (user_id, category);
CREATE INDEX memory_facts_expires_at_idx ON ai.memory_facts (expires_at) WHERE expires_at IS NOT NULL;

-- Every observation of a fact as it was recorded: the version is the fact's observation
-- count at that moment. Written by a trigger, so no writer can skip it; read through the
-- fact, whose user_id scopes it.
CREATE TABLE ai.memory_fact_history (
    fact_id     uuid NOT NULL REFERENCES ai.memory_facts (id) ON DELETE CASCADE,
    version     integer NOT NULL,
    content     text NOT NULL,
    category    text,
    confidence  real NOT NULL,
    source      text NOT NULL,
    metadata    jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (fact_id, version)
);

CREATE FUNCTION ai.record_memory_fact_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ai.memory_fact_history (fact_id, version, content, category, confidence, source, metadata)
    VALUES (NEW.id, NEW.observation_count, NEW.content, NEW.category, NEW.confidence, NEW.source, NEW.metadata)
    ON CONFLICT (fact_id, version) DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER memory_facts_record_version AFTER INSERT OR UPDATE OF observation_count ON ai.memory_facts
    FOR EACH ROW EXECUTE FUNCTION ai.record_memory_fact_version();

CREATE TABLE ai.learning_data (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
    -- Chosen by the recorder: recording the same example twice stores it once.
    idempotency_key text NOT NULL
                    CONSTRAINT learning_data_idempotency_key_length CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    prompt          text NOT NULL,
    response        text NOT NULL,
    feedback        text NOT NULL
                    CONSTRAINT learning_data_feedback_known CHECK (feedback IN ('positive', 'negative', 'neutral', 'correction')),
    correction      text,
    metadata        jsonb NOT NULL DEFAULT '{}'
                    CONSTRAINT learning_data_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT learning_data_user_idempotency_key UNIQUE (user_id, idempotency_key),
    CONSTRAINT learning_data_correction_given CHECK ((feedback = 'correction') = (correction IS NOT NULL))
);
-- Export streams in creation order; retention deletes the oldest.
CREATE INDEX learning_data_created_at_idx ON ai.learning_data (created_at, id);

-- A change of the entry, not of its hit count: the batched hit-count updates run no trigger.
CREATE TRIGGER cache_entries_set_updated_at BEFORE UPDATE OF value, expires_at, sliding_ttl ON ai.cache_entries
    FOR EACH ROW EXECUTE FUNCTION ai.set_updated_at();
CREATE TRIGGER conversations_set_updated_at BEFORE UPDATE ON ai.conversations
    FOR EACH ROW EXECUTE FUNCTION ai.set_updated_at();
CREATE TRIGGER memory_facts_set_updated_at BEFORE UPDATE ON ai.memory_facts
    FOR EACH ROW EXECUTE FUNCTION ai.set_updated_at();

-- Removes at most `batch_size` expired entries and returns how many it removed. Bounded so
-- that each call holds its row locks briefly; callers repeat until it returns less than
-- `batch_size`. SKIP LOCKED lets concurrent cleaners (several api-servers) share the work.
-- Rows are deleted by the ctid their lock was taken on (a TID scan, no second index lookup
-- per row: four times faster than joining on the key); a row another session changed since
-- is not among them, as the lock prevents it.
CREATE FUNCTION ai.cleanup_expired_cache(batch_size integer DEFAULT 10000) RETURNS bigint
LANGUAGE sql AS $$
    WITH expired AS (
        SELECT ctid
        FROM ai.cache_entries
        WHERE expires_at <= now()
        ORDER BY expires_at
        LIMIT batch_size
        FOR UPDATE SKIP LOCKED
    ), removed AS (
        DELETE FROM ai.cache_entries
        WHERE ctid = ANY (ARRAY(SELECT ctid FROM expired))
        RETURNING 1
    )
    SELECT count(*) FROM removed
$$;

-- Tables are named, not "ALL TABLES": the set's history table lives in this schema too, and
-- only the migrator may write it.
GRANT USAGE ON SCHEMA ai TO fodi_ai, fodi_readonly;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON ai.cache_entries, ai.conversations, ai.conversation_messages, ai.memory_facts,
       ai.memory_fact_history, ai.learning_data
    TO fodi_ai;
GRANT SELECT
    ON ai.cache_entries, ai.conversations, ai.conversation_messages, ai.memory_facts,
       ai.memory_fact_history, ai.learning_data
    TO fodi_readonly;
-- Tables added by later migrations of this set get the same grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA ai GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO fodi_ai;
ALTER DEFAULT PRIVILEGES IN SCHEMA ai GRANT USAGE, SELECT ON SEQUENCES TO fodi_ai;
ALTER DEFAULT PRIVILEGES IN SCHEMA ai GRANT SELECT ON TABLES TO fodi_readonly;
