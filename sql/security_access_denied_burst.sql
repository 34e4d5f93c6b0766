-- title: Access-denied bursts
-- description: Principals denied (the calls CIS 4.1 counts: *UnauthorizedOperation or AccessDenied*, not HeadBucket, not from delivery.logs.amazonaws.com) on at least $min_apis distinct APIs (eventSource:eventName) in one UTC day, with denials making up at least $min_share of their calls: stolen credentials tried against everything, apart from busy roles that collect a few denials on many APIs. The denied events themselves are the principal's rows of security_events (cis_4_1).
-- parameters: day, min_apis, min_share
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
        account, region, eventsource, eventname, eventtime, sourceipaddress,
        coalesce((errorcode LIKE '%UnauthorizedOperation' OR errorcode LIKE 'AccessDenied%')
                 AND coalesce(sourceipaddress, '') <> 'delivery.logs.amazonaws.com'
                 AND eventname <> 'HeadBucket', false) AS denied
    FROM cloudtrail
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
