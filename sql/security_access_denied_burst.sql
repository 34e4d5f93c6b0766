-- title: Access-denied bursts
-- description: Principals denied (the calls CIS 4.1 counts: *UnauthorizedOperation or AccessDenied*, not HeadBucket, not from delivery.logs.amazonaws.com) on at least $min_apis distinct APIs (eventSource:eventName) in one UTC day, with denials making up at least $min_share of their calls: stolen credentials tried against everything, apart from busy roles that collect a few denials on many APIs. The denied events are the day's cis_4_1 rows of security_flags; only the calls per principal are counted from the day's events.
-- parameters: day, min_apis, min_share
-- arrays: api_list, regions, source_ips
WITH denied AS (
    SELECT principal, account, region, eventsource, eventname, eventtime, sourceipaddress
    FROM security_flags
    WHERE event_date = $day AND cis_4_1
),
bursts AS (
    SELECT
        principal,
        min(account) AS account,
        count(DISTINCT coalesce(eventsource, '(missing)') || ':' || coalesce(eventname, '(missing)')) AS apis,
        count(*) AS denials,
        array_agg(DISTINCT coalesce(eventsource, '(missing)') || ':' || coalesce(eventname, '(missing)')) AS api_list,
        array_agg(DISTINCT region) AS regions,
        array_agg(DISTINCT sourceipaddress) FILTER (WHERE sourceipaddress IS NOT NULL) AS source_ips,
        min(eventtime) AS first_seen,
        max(eventtime) AS last_seen
    FROM denied
    GROUP BY principal
),
calls AS (
    SELECT principal, count(*) AS calls
    FROM cloudtrail_calls
    WHERE event_date = $day AND principal IN (SELECT principal FROM bursts WHERE apis >= $min_apis)
    GROUP BY principal
)
SELECT
    b.principal,
    b.account,
    b.apis,
    b.denials,
    c.calls,
    round(CAST(b.denials AS DOUBLE) / c.calls, 4) AS denied_share,
    b.api_list,
    b.regions,
    b.source_ips,
    b.first_seen,
    b.last_seen
FROM bursts AS b
JOIN calls AS c ON c.principal = b.principal
-- the thresholds are in WHERE, not HAVING: Athena binds execution parameters in WHERE clauses only
WHERE b.apis >= $min_apis AND b.denials >= $min_share * c.calls
ORDER BY b.apis DESC, b.principal
