-- title: Access-denied bursts
-- description: Principals denied (the calls CIS 4.1 counts: *UnauthorizedOperation or AccessDenied*, not HeadBucket, not from delivery.logs.amazonaws.com) on at least $min_apis distinct APIs (eventSource:eventName) in one UTC day, with denials making up at least $min_share of their calls: stolen credentials tried against everything, apart from busy roles that collect a few denials on many APIs. The denied events themselves are the principal's rows of security_events (cis_4_1).
-- parameters: day, min_apis, min_share
WITH events AS (
    SELECT
        principal,
        account, region, eventsource, eventname, eventtime, sourceipaddress,
        coalesce((errorcode LIKE '%UnauthorizedOperation' OR errorcode LIKE 'AccessDenied%')
                 AND coalesce(sourceipaddress, '') <> 'delivery.logs.amazonaws.com'
                 AND eventname <> 'HeadBucket', false) AS denied
    FROM cloudtrail_calls
    WHERE event_date = $day
)
SELECT
    principal,
    min(account) AS account,
    count(DISTINCT eventsource || ':' || eventname) FILTER (WHERE denied) AS apis,
    count(*) FILTER (WHERE denied) AS denials,
    count(*) AS calls,
    round(CAST(count(*) FILTER (WHERE denied) AS DOUBLE) / count(*), 4) AS denied_share,
    array_agg(DISTINCT eventsource || ':' || eventname) FILTER (WHERE denied) AS api_list,
    array_agg(DISTINCT region) FILTER (WHERE denied) AS regions,
    array_agg(DISTINCT sourceipaddress) FILTER (WHERE denied AND sourceipaddress IS NOT NULL) AS source_ips,
    min(eventtime) FILTER (WHERE denied) AS first_seen,
    max(eventtime) FILTER (WHERE denied) AS last_seen
FROM events
GROUP BY principal
HAVING count(DISTINCT eventsource || ':' || eventname) FILTER (WHERE denied) >= $min_apis
    AND count(*) FILTER (WHERE denied) >= $min_share * count(*)
ORDER BY apis DESC, principal
