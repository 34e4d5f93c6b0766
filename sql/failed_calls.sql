-- title: Failed API calls
-- description: For one UTC day, in one scan, failures told apart by the dimension column: 'error_code' (each error code, or the error message when a failure has none, as failed console sign-ins, with its family: access_denied, authentication, throttling, not_found, conflict, limits, invalid_request, service_error, dry_run, other), 'api' and 'principal' (both with all calls, so failure rates are true rates): failures, denied (access_denied and authentication families) with the distinct APIs denied, throttled, not found, principals and APIs involved, error codes, a sample message, first and last failure. The top $limit of each, by failures.
-- parameters: day, limit
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
        coalesce(useridentity.type, 'Unknown') AS identity_type,
        eventsource || ':' || eventname AS api,
        errormessage, eventtime,
        CASE WHEN coalesce(errorcode, '') <> '' THEN errorcode WHEN coalesce(errormessage, '') <> '' THEN errormessage END AS error_code
    FROM cloudtrail
    WHERE event_date = $day
),
classified AS (
    SELECT
        *,
        CASE
            WHEN error_code IS NULL THEN NULL
            WHEN error_code LIKE '%InvalidClientTokenId%' OR error_code LIKE '%SignatureDoesNotMatch%'
                OR error_code LIKE '%ExpiredToken%' OR error_code LIKE '%AuthFailure%'
                OR error_code LIKE '%IncompleteSignature%' OR error_code LIKE '%InvalidAccessKeyId%'
                OR error_code LIKE '%UnrecognizedClient%' OR error_code LIKE '%InvalidIdentityToken%'
                OR error_code LIKE '%MissingAuthenticationToken%' OR error_code = 'Failed authentication'
                THEN 'authentication'
            WHEN error_code LIKE '%AccessDenied%' OR error_code LIKE '%UnauthorizedOperation%'
                OR error_code LIKE '%Unauthorized%' OR error_code LIKE '%NotAuthorized%'
                OR error_code LIKE '%Forbidden%' OR error_code LIKE '%AuthorizationError%'
                THEN 'access_denied'
            WHEN lower(error_code) LIKE '%throttl%' OR error_code LIKE '%RequestLimitExceeded%'
                OR error_code LIKE '%TooManyRequests%' OR error_code LIKE '%SlowDown%'
                OR error_code LIKE '%ProvisionedThroughputExceeded%' OR error_code LIKE '%RateExceeded%'
                OR error_code LIKE '%PriorRequestNotComplete%'
                THEN 'throttling'
            WHEN error_code LIKE '%NotFound%' OR error_code LIKE '%NoSuch%' THEN 'not_found'
            WHEN error_code LIKE '%AlreadyExists%' OR error_code LIKE '%AlreadyOwnedByYou%'
                OR error_code LIKE '%Duplicate%' OR error_code LIKE '%Conflict%' OR error_code LIKE '%InUse%'
                OR error_code LIKE '%ConditionalCheckFailed%' OR error_code LIKE '%DependencyViolation%'
                THEN 'conflict'
            WHEN error_code LIKE '%LimitExceeded%' OR error_code LIKE '%InsufficientInstanceCapacity%'
                THEN 'limits'
            WHEN error_code LIKE '%Validation%' OR error_code LIKE '%Invalid%' OR error_code LIKE '%Malformed%'
                OR error_code LIKE '%MissingParameter%' OR error_code LIKE '%BadRequest%'
                THEN 'invalid_request'
            WHEN error_code LIKE '%InternalError%' OR error_code LIKE '%InternalFailure%'
                OR error_code LIKE '%ServiceUnavailable%' OR error_code LIKE '%InternalServer%'
                OR error_code LIKE 'Server.%'
                THEN 'service_error'
            WHEN error_code LIKE '%DryRunOperation%' THEN 'dry_run'
            ELSE 'other'
        END AS family
    FROM events
),
grouped AS (
    SELECT
        CASE
            WHEN grouping(error_code) = 0 THEN 'error_code'
            WHEN grouping(api) = 0 THEN 'api'
            ELSE 'principal'
        END AS dimension,
        coalesce(error_code, api, principal) AS name,
        min(family) AS family,
        min(identity_type) AS principal_type,
        count(*) AS calls,
        count(error_code) AS failures,
        round(CAST(count(error_code) AS DOUBLE) / count(*), 4) AS failure_rate,
        count(*) FILTER (WHERE family IN ('access_denied', 'authentication')) AS denied,
        count(DISTINCT api) FILTER (WHERE family IN ('access_denied', 'authentication')) AS denied_apis,
        count(*) FILTER (WHERE family = 'throttling') AS throttled,
        count(*) FILTER (WHERE family = 'not_found') AS not_found,
        count(DISTINCT principal) FILTER (WHERE error_code IS NOT NULL) AS principals,
        count(DISTINCT api) FILTER (WHERE error_code IS NOT NULL) AS apis,
        array_agg(DISTINCT error_code) FILTER (WHERE error_code IS NOT NULL) AS error_codes,
        min(errormessage) AS sample_message,
        min(eventtime) FILTER (WHERE error_code IS NOT NULL) AS first_failure,
        max(eventtime) FILTER (WHERE error_code IS NOT NULL) AS last_failure
    FROM classified
    GROUP BY GROUPING SETS ((error_code), (api), (principal))
),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY dimension ORDER BY failures DESC, name) AS position
    FROM grouped
    WHERE failures > 0
)
SELECT *
FROM ranked
WHERE position <= $limit
ORDER BY dimension, position
