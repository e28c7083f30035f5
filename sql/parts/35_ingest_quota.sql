-- sql/parts/35_ingest_quota.sql — the quota verdict each ingest response carries.

-- Quota verdict carried by the ingest response. Governance refines it.
CREATE FUNCTION @extschema@.ingest_quota(install_id text, account_id text,
                                         new_requests bigint, new_tokens bigint,
                                         now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lim   bigint;
    warn  integer;
    crit  integer;
    blk   integer;
    used  bigint;
    month_start date := date_trunc('month', now AT TIME ZONE 'UTC')::date;
BEGIN
    SELECT p.monthly_requests, p.warning_pct, p.critical_pct, p.block_pct
      INTO lim, warn, crit, blk
      FROM @extschema@.accounts a JOIN @extschema@.plans p USING (plan)
     WHERE a.account_id = ingest_quota.account_id;
    SELECT coalesce(sum(d.total_requests), 0) INTO used
      FROM @extschema@.daily d
      JOIN @extschema@.installations i USING (install_id)
     WHERE i.account_id = ingest_quota.account_id
       AND d.usage_date >= month_start
       AND d.usage_date < (month_start + interval '1 month')::date;
    RETURN jsonb_build_object(
        'level', CASE WHEN lim IS NULL THEN 'ok'
                      WHEN used * 100 >= lim * blk THEN 'blocked'
                      WHEN used * 100 >= lim * crit THEN 'critical'
                      WHEN used * 100 >= lim * warn THEN 'warning'
                      ELSE 'ok' END,
        'used', used,
        'limit', lim);
END
$$;
COMMENT ON FUNCTION @extschema@.ingest_quota(text, text, bigint, bigint, timestamptz) IS
    'The quota verdict {level, used, limit} returned with each ingest, for the account''s calendar month (UTC).';
