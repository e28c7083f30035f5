-- sql/parts/15_partitions.sql — partitions of the raw events and daily summaries.

CREATE FUNCTION @extschema@.ensure_partitions(from_ts timestamptz, to_ts timestamptz)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d       date;
    m       date;
    created integer := 0;
    part    text;
BEGIN
    -- One events partition per UTC day.
    FOR d IN SELECT generate_series((from_ts AT TIME ZONE 'UTC')::date,
                                    (to_ts AT TIME ZONE 'UTC')::date, interval '1 day')::date LOOP
        part := 'events_p' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(format('@extschema@.%I', part)) IS NOT NULL;
        PERFORM @extschema@._attach_partition('events', part,
            format('%L', (d::timestamp AT TIME ZONE 'UTC')),
            format('%L', ((d + 1)::timestamp AT TIME ZONE 'UTC')), 'created_at');
        created := created + 1;
    END LOOP;
    -- One daily partition per month.
    FOR m IN SELECT generate_series(date_trunc('month', from_ts AT TIME ZONE 'UTC'),
                                    date_trunc('month', to_ts AT TIME ZONE 'UTC'), interval '1 month')::date LOOP
        part := 'daily_p' || to_char(m, 'YYYYMM');
        CONTINUE WHEN to_regclass(format('@extschema@.%I', part)) IS NOT NULL;
        PERFORM @extschema@._attach_partition('daily', part,
            format('%L', m), format('%L', (m + interval '1 month')::date), 'usage_date');
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;
COMMENT ON FUNCTION @extschema@.ensure_partitions(timestamptz, timestamptz) IS
    'Create the events partitions (one per UTC day) and daily partitions (one per month) covering from_ts to to_ts; returns how many it created.';

-- Create parent_part for [lo, hi), moving any rows the default partition
-- holds for that range into it.
CREATE FUNCTION @extschema@._attach_partition(parent text, part text, lo text, hi text, keycol text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('CREATE TABLE @extschema@.%I (LIKE @extschema@.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   part, parent);
    EXECUTE format('WITH moved AS (DELETE FROM @extschema@.%I WHERE %I >= %s AND %I < %s RETURNING *) '
                   'INSERT INTO @extschema@.%I SELECT * FROM moved',
                   parent || '_default', keycol, lo, keycol, hi, part);
    EXECUTE format('ALTER TABLE @extschema@.%I ATTACH PARTITION @extschema@.%I FOR VALUES FROM (%s) TO (%s)',
                   parent, part, lo, hi);
END
$$;
COMMENT ON FUNCTION @extschema@._attach_partition(text, text, text, text, text) IS
    'Internal: create and attach one partition, moving its rows out of the default partition.';

-- The partitions of parent with their bounds as ISO text (NULL for the
-- default partition), read from the catalog rather than from partition
-- names, in order.
CREATE FUNCTION @extschema@._partitions(parent regclass)
RETURNS TABLE (part regclass, lo text, hi text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD'
AS $$
    SELECT c.oid::regclass,
           (regexp_match(b.bound, 'FROM \(''([^'']*)''\)'))[1],
           (regexp_match(b.bound, 'TO \(''([^'']*)''\)'))[1]
      FROM pg_catalog.pg_inherits i
      JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
     CROSS JOIN LATERAL (SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound) b
     WHERE i.inhparent = parent
     ORDER BY 3 NULLS FIRST;
$$;
COMMENT ON FUNCTION @extschema@._partitions(regclass) IS
    'Internal: the partitions of a range-partitioned table with their lower and upper bounds as text; NULL bounds for the default partition.';
