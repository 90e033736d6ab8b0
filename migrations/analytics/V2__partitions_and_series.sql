-- Daily partitions created ahead of time and dropped for retention, and the capped series
-- dictionary. All three are functions so that the analytics crate, running as fodi_analytics,
-- can do them without owning the tables (the partition functions run as their owner).

-- Creates the daily partitions of analytics.<parent> ('metrics' or 'events') for `days` UTC
-- days from `first_day` that do not exist yet; returns how many it created. A partition is
-- named <parent>_pYYYYMMDD. Rows that arrived for one of those days before its partition
-- existed wait in the default partition: they are moved into the new partition (attaching it
-- would fail otherwise). Concurrent callers queue on an advisory lock and skip what exists.
CREATE FUNCTION analytics.create_daily_partitions(parent text, first_day date, days integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    day date;
    partition text;
    lower_bound timestamptz;
    upper_bound timestamptz;
    created integer := 0;
BEGIN
    IF parent IS NULL OR parent NOT IN ('metrics', 'events') THEN
        RAISE EXCEPTION 'analytics.% is not a partitioned table of this schema', parent
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF days IS NULL OR days < 0 OR days > 366 THEN
        RAISE EXCEPTION 'days must be between 0 and 366, not %', days
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('analytics.create_daily_partitions'), hashtext(parent));
    FOR offset_days IN 0 .. days - 1 LOOP
        day := first_day + offset_days;
        partition := format('%s_p%s', parent, to_char(day, 'YYYYMMDD'));
        CONTINUE WHEN to_regclass(format('analytics.%I', partition)) IS NOT NULL;
        lower_bound := day::timestamp AT TIME ZONE 'UTC';
        upper_bound := (day + 1)::timestamp AT TIME ZONE 'UTC';
        EXECUTE format('CREATE TABLE analytics.%I (LIKE analytics.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       partition, parent);
        EXECUTE format('WITH moved AS (DELETE FROM analytics.%I WHERE time >= %L AND time < %L RETURNING *)
                        INSERT INTO analytics.%I SELECT * FROM moved',
                       parent || '_default', lower_bound, upper_bound, partition);
        EXECUTE format('ALTER TABLE analytics.%I ATTACH PARTITION analytics.%I FOR VALUES FROM (%L) TO (%L)',
                       parent, partition, lower_bound, upper_bound);
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;

-- Drops the daily partitions of analytics.<parent> for days before `before_day` (whole
-- tables: no mass DELETE, no dead rows to vacuum), and removes the few stray rows of those
-- days from the default partition; returns how many partitions it dropped.
CREATE FUNCTION analytics.drop_daily_partitions(parent text, before_day date)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    partition text;
    dropped integer := 0;
BEGIN
    IF parent IS NULL OR parent NOT IN ('metrics', 'events') THEN
        RAISE EXCEPTION 'analytics.% is not a partitioned table of this schema', parent
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('analytics.create_daily_partitions'), hashtext(parent));
    FOR partition IN
        SELECT child.relname
        FROM pg_inherits
        JOIN pg_class child ON child.oid = pg_inherits.inhrelid
        WHERE pg_inherits.inhparent = format('analytics.%I', parent)::regclass
          AND child.relname ~ ('^' || parent || '_p[0-9]{8}$')
          AND to_date(right(child.relname, 8), 'YYYYMMDD') < before_day
        ORDER BY child.relname
    LOOP
        EXECUTE format('DROP TABLE analytics.%I', partition);
        dropped := dropped + 1;
    END LOOP;
    EXECUTE format('DELETE FROM analytics.%I WHERE time < %L',
                   parent || '_default', before_day::timestamp AT TIME ZONE 'UTC');
    RETURN dropped;
END
$$;

REVOKE ALL ON FUNCTION analytics.create_daily_partitions(text, date, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION analytics.drop_daily_partitions(text, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION analytics.create_daily_partitions(text, date, integer) TO fodi_analytics;
GRANT EXECUTE ON FUNCTION analytics.drop_daily_partitions(text, date) TO fodi_analytics;

-- The id of the series (name, labels), created if the metric has fewer than `max_series`
-- series; NULL when it has that many already (the write is then rejected by the caller).
-- Creations of one metric's series queue on an advisory lock, so concurrent writers in
-- several processes never push a metric past its cap.
CREATE FUNCTION analytics.resolve_series(series_name text, series_labels jsonb, max_series integer)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    found bigint;
BEGIN
    SELECT id INTO found FROM analytics.metric_series WHERE name = series_name AND labels = series_labels;
    IF found IS NOT NULL THEN
        RETURN found;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('analytics.resolve_series'), hashtext(series_name));
    SELECT id INTO found FROM analytics.metric_series WHERE name = series_name AND labels = series_labels;
    IF found IS NOT NULL THEN
        RETURN found;
    END IF;
    IF (SELECT count(*) FROM analytics.metric_series WHERE name = series_name) >= max_series THEN
        RETURN NULL;
    END IF;
    INSERT INTO analytics.metric_series (name, labels) VALUES (series_name, series_labels)
    RETURNING id INTO found;
    RETURN found;
END
$$;
GRANT EXECUTE ON FUNCTION analytics.resolve_series(text, jsonb, integer) TO fodi_analytics;
