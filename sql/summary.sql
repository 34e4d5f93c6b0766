-- title: Day at a glance
-- description: Headline numbers for one UTC day (the row whose hour is null) and the same numbers for each UTC hour that had calls: events, failed calls, reads, writes, root events, principals (as in top_callers), accounts, regions, source IPs, APIs, first and last event. One scan of the day.
-- parameters: day
WITH events AS (
    SELECT
        CASE
            WHEN useridentity.type = 'AssumedRole'
                THEN coalesce(useridentity.sessioncontext.sessionissuer.arn, useridentity.arn, 'unknown')
            WHEN useridentity.type = 'AWSService' THEN coalesce(useridentity.invokedby, 'AWS service')
            WHEN useridentity.type = 'Root'
                THEN coalesce(useridentity.arn, 'arn:aws:iam::' || useridentity.accountid || ':root', 'root')
            WHEN useridentity.type = 'IdentityCenterUser'
                THEN 'identitycenter:' || coalesce(useridentity.onbehalfof.userid, useridentity.username,
                                                   useridentity.principalid, 'unknown')
            WHEN useridentity.type IN ('SAMLUser', 'WebIdentityUser')
                THEN lower(useridentity.type) || ':' || coalesce(useridentity.username, useridentity.principalid,
                                                                 'unknown')
            WHEN useridentity.type = 'AWSAccount'
                THEN 'account:' || coalesce(useridentity.accountid, useridentity.principalid, 'unknown')
            ELSE coalesce(useridentity.arn, useridentity.invokedby, useridentity.principalid, useridentity.username,
                          'unknown')
        END AS principal,
        account, region, sourceipaddress, eventsource, eventname, eventtime, readonly,
        CAST(extract(HOUR FROM eventtime) AS INTEGER) AS hour,
        useridentity.type = 'Root' AS is_root,
        coalesce(errorcode, '') <> '' OR coalesce(errormessage, '') <> '' AS failed
    FROM cloudtrail
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
    count(DISTINCT eventsource || ':' || eventname) AS apis,
    min(eventtime) AS first_event,
    max(eventtime) AS last_event
FROM events
GROUP BY GROUPING SETS ((), (hour))
ORDER BY hour NULLS FIRST
