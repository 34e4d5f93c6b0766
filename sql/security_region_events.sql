-- title: First calls in a region
-- description: The first $limit calls of one UTC day by principals other than AWS services in one account and region, for a region the account had not used before.
-- parameters: day, account, region, limit
-- a row number compared in WHERE, not a LIMIT: Athena binds execution parameters in WHERE clauses only
WITH calls AS (
    SELECT
        eventid, eventtime, eventsource, eventname, sourceipaddress, useragent, nullif(errorcode, '') AS errorcode,
        principal, row_number() OVER (ORDER BY eventtime, eventid) AS position
    FROM cloudtrail_calls
    WHERE event_date = $day AND account = $account AND region = $region
        AND coalesce(eventtype, '') <> 'AwsServiceEvent'
        AND coalesce(useridentity.type, eventtype, '') <> 'AWSService'  -- see security_region_activity.sql
)
SELECT eventid, eventtime, eventsource, eventname, sourceipaddress, useragent, errorcode, principal
FROM calls
WHERE position <= $limit
ORDER BY position
