-- title: Activity per region
-- description: The calls made in one UTC day in one account and region by principals other than AWS services, with the principals and APIs involved; asked only for a region the account had not used before (known from the region_days derived table), so a normal day reads nothing.
-- parameters: day, account, region
-- arrays: principal_list, api_list, source_ips
WITH events AS (
    SELECT
        principal,
        account, region, eventsource, eventname, eventtime, eventid, sourceipaddress
    FROM cloudtrail_calls
    WHERE event_date = $day AND account = $account AND region = $region
        AND coalesce(eventtype, '') <> 'AwsServiceEvent'
        -- not `useridentity.type <> ...`: DuckDB 2.0 reads ~10x more Parquet when a comparison on a lone struct
        -- field is pushed into the scan; mixing in a top-level column keeps it a plain filter (same meaning)
        AND coalesce(useridentity.type, eventtype, '') <> 'AWSService'
)
SELECT
    account,
    region,
    count(*) AS events,
    count(DISTINCT principal) AS principals,
    array_agg(DISTINCT principal) AS principal_list,
    array_agg(DISTINCT coalesce(eventsource, '(missing)') || ':' || coalesce(eventname, '(missing)')) AS api_list,
    array_agg(DISTINCT sourceipaddress) FILTER (WHERE sourceipaddress IS NOT NULL) AS source_ips,
    min(eventtime) AS first_seen,
    max(eventtime) AS last_seen
FROM events
GROUP BY account, region
ORDER BY account, region
