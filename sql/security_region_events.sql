-- title: First calls in a region
-- description: The first $limit calls of one UTC day by principals other than AWS services in one account and region, for a region the account had not used before.
-- parameters: day, account, region, limit
SELECT
    eventid, eventtime, eventsource, eventname, sourceipaddress, useragent, nullif(errorcode, '') AS errorcode,
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
        END AS principal
FROM cloudtrail
WHERE event_date = $day AND account = $account AND region = $region
    AND coalesce(eventtype, '') <> 'AwsServiceEvent'
    AND coalesce(useridentity.type, eventtype, '') <> 'AWSService'  -- see security_region_activity.sql
ORDER BY eventtime, eventid
LIMIT $limit
