-- title: Day at a glance
-- description: Headline numbers for one UTC day (the row whose hour is null) and the same numbers for each UTC hour that had calls: events, failed calls, reads, writes, root events, principals (as in top_callers), accounts, regions, source IPs, APIs, first and last event. One scan of the day.
-- parameters: day
WITH events AS (
    SELECT
        principal,
        account, region, sourceipaddress, eventsource, eventname, eventtime, readonly,
        CAST(extract(HOUR FROM eventtime) AS INTEGER) AS hour,
        useridentity.type = 'Root' AS is_root,
        failed
    FROM cloudtrail_calls
    WHERE event_date = $day
)
SELECT
    hour,
    count(*) AS events,
    count(*) FILTER (WHERE failed) AS failed,
    count(*) FILTER (WHERE readonly) AS reads,
    count(*) FILTER (WHERE NOT readonly) AS writes,
    count(*) FILTER (WHERE is_root) AS root_events,
    count(DISTINCT principal) AS principals,
    count(DISTINCT account) AS accounts,
    count(DISTINCT region) AS regions,
    count(DISTINCT sourceipaddress) AS source_ips,
    count(DISTINCT coalesce(eventsource, '(missing)') || ':' || coalesce(eventname, '(missing)')) AS apis,
    min(eventtime) AS first_event,
    max(eventtime) AS last_event
FROM events
GROUP BY GROUPING SETS ((), (hour))
ORDER BY hour NULLS FIRST
