-- title: CloudTrail calls, with the derived columns the reports share
-- description: The cloudtrail table plus principal (who called, defined for every identity type: the IAM user ARN; for assumed roles the session issuer's role ARN; root; the AWS service from invokedBy; the Identity Center user id; the SAML or web identity user name; the calling account), failed (an errorCode or an errorMessage, so failed console sign-ins count), error_code (errorCode, else errorMessage) and error_family (access_denied, authentication, throttling, not_found, conflict, limits, invalid_request, service_error, dry_run, other). DuckDB creates it as a view; for Athena it is added to a query as a WITH clause.
-- parameters: none
WITH calls AS (
    SELECT
        *,
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
        coalesce(errorcode, '') <> '' OR coalesce(errormessage, '') <> '' AS failed,
        CASE WHEN coalesce(errorcode, '') <> '' THEN errorcode WHEN coalesce(errormessage, '') <> '' THEN errormessage END AS error_code
    FROM cloudtrail
)
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
    END AS error_family
FROM calls
