-- Set `analytics`, schema `analytics`: metrics, events and their daily rollup.
--
-- metrics and events are partitioned by time. The analytics crate creates the daily
-- partitions ahead of time and drops whole partitions for retention; the DEFAULT partitions
-- catch rows that arrive for a day without a partition, so no write is ever refused.
-- Neither table has foreign keys: ingestion runs at COPY speed, and events outlive the
-- users they mention (user ids are kept as plain values).

DO $$
BEGIN
    -- Group roles are cluster-wide: another database of the cluster may have created them,
    -- possibly at this very moment, hence the existence check and the exception handler.
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fodi_analytics') THEN
        CREATE ROLE fodi_analytics NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fodi_readonly') THEN
        CREATE ROLE fodi_readonly NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

-- The series dictionary: a metric name with one sorted set of labels is one series. Points
-- store the series id, which keeps metric rows narrow and lets the crate cap how many label
-- combinations one metric may have.
CREATE TABLE analytics.metric_series (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL CONSTRAINT metric_series_name_format CHECK (name ~ '^[a-zA-Z_:][a-zA-Z0-9_:.]{0,199}$'),
    labels     jsonb NOT NULL DEFAULT '{}'
               CONSTRAINT metric_series_labels_object CHECK (jsonb_typeof(labels) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT metric_series_name_labels_key UNIQUE (name, labels)
);
-- Label filters (labels @> '{"route": "/orders"}') find their series here.
CREATE INDEX metric_series_labels_idx ON analytics.metric_series USING gin (labels jsonb_path_ops);

CREATE TABLE analytics.metrics (
    series_id bigint NOT NULL,
    time      timestamptz NOT NULL,
    value     double precision NOT NULL
) PARTITION BY RANGE (time);
CREATE TABLE analytics.metrics_default PARTITION OF analytics.metrics DEFAULT;
CREATE INDEX metrics_series_id_time_idx ON analytics.metrics (series_id, time);

CREATE TABLE analytics.events (
    time       timestamptz NOT NULL,
    kind       text NOT NULL CONSTRAINT events_kind_length CHECK (length(kind) BETWEEN 1 AND 100),
    user_id    uuid,
    session_id uuid,
    properties jsonb NOT NULL DEFAULT '{}'
               CONSTRAINT events_properties_object CHECK (jsonb_typeof(properties) = 'object')
) PARTITION BY RANGE (time);
CREATE TABLE analytics.events_default PARTITION OF analytics.events DEFAULT;
CREATE INDEX events_kind_time_idx ON analytics.events (kind, time);

-- Events per kind and UTC day, with unique users. The unique index is what allows
-- REFRESH ... CONCURRENTLY, which never blocks readers.
CREATE MATERIALIZED VIEW analytics.daily_stats AS
    SELECT (time AT TIME ZONE 'UTC')::date AS day,
           kind,
           count(*) AS events,
           count(DISTINCT user_id) AS unique_users
    FROM analytics.events
    GROUP BY 1, 2;
CREATE UNIQUE INDEX daily_stats_day_kind_key ON analytics.daily_stats (day, kind);

-- Only a materialized view's owner may refresh it; this function lets fodi_analytics do so
-- without owning it. Concurrent refreshes of one view queue on its lock.
CREATE FUNCTION analytics.refresh_daily_stats() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    REFRESH MATERIALIZED VIEW CONCURRENTLY analytics.daily_stats;
END
$$;
REVOKE ALL ON FUNCTION analytics.refresh_daily_stats() FROM PUBLIC;

-- Tables are named, not "ALL TABLES": the set's history table lives in this schema too, and
-- only the migrator may write it.
GRANT USAGE ON SCHEMA analytics TO fodi_analytics, fodi_readonly;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON analytics.metric_series, analytics.metrics, analytics.metrics_default,
       analytics.events, analytics.events_default
    TO fodi_analytics;
GRANT SELECT
    ON analytics.metric_series, analytics.metrics, analytics.metrics_default,
       analytics.events, analytics.events_default, analytics.daily_stats
    TO fodi_analytics, fodi_readonly;
GRANT EXECUTE ON FUNCTION analytics.refresh_daily_stats() TO fodi_analytics;
ALTER DEFAULT PRIVILEGES IN SCHEMA analytics GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO fodi_analytics;
ALTER DEFAULT PRIVILEGES IN SCHEMA analytics GRANT SELECT ON TABLES TO fodi_readonly;
