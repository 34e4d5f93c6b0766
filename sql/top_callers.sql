-- title: Top callers
-- description: For one UTC day, in one scan, the top $limit of four rankings told apart by the dimension column: 'principal' (calls, distinct APIs, errors and error rate, reads and writes, accounts, regions, source IPs, session names, first and last seen), 'api' (eventsource:eventname), 'source_ip' (an AWS service name stands in for the address when a service called) and 'identity_type' (the read/write split per userIdentity type). A principal is the IAM user ARN; for assumed roles the role (session issuer ARN) with its session names listed; root; the AWS service (invokedBy); the Identity Center user id; the SAML or web identity user name; the calling account.
-- parameters: day, limit
-- arrays: region_list, source_ip_list, principal_list, session_names
WITH events AS (
    SELECT
        principal,
        coalesce(useridentity.type, 'Unknown') AS identity_type,
        CASE WHEN useridentity.type = 'AssumedRole' THEN split_part(useridentity.arn, '/', 3) END AS session_name,
        coalesce(eventsource, '(missing)') || ':' || coalesce(eventname, '(missing)') AS api,
        coalesce(sourceipaddress, 'unknown') AS source_ip,
        account, region, eventtime, readonly,
        failed
    FROM cloudtrail_calls
    WHERE event_date = $day
),
grouped AS (
    SELECT
        CASE
            WHEN grouping(principal) = 0 THEN 'principal'
            WHEN grouping(api) = 0 THEN 'api'
            WHEN grouping(source_ip) = 0 THEN 'source_ip'
            ELSE 'identity_type'
        END AS dimension,
        coalesce(principal, api, source_ip, identity_type) AS name,
        min(identity_type) AS principal_type,
        count(*) AS calls,
        count(DISTINCT api) AS apis,
        count(DISTINCT principal) AS principals,
        count(*) FILTER (WHERE failed) AS errors,
        round(CAST(count(*) FILTER (WHERE failed) AS DOUBLE) / count(*), 4) AS error_rate,
        count(*) FILTER (WHERE readonly) AS reads,
        count(*) FILTER (WHERE NOT readonly) AS writes,
        count(*) FILTER (WHERE readonly IS NULL) AS unknown,
        count(DISTINCT account) AS accounts,
        count(DISTINCT region) AS regions,
        array_agg(DISTINCT region) AS region_list,
        count(DISTINCT source_ip) AS source_ips,
        array_agg(DISTINCT source_ip) AS source_ip_list,
        array_agg(DISTINCT principal) AS principal_list,
        count(DISTINCT session_name) AS sessions,
        array_agg(DISTINCT session_name) FILTER (WHERE session_name IS NOT NULL) AS session_names,
        min(eventtime) AS first_seen,
        max(eventtime) AS last_seen
    FROM events
    GROUP BY GROUPING SETS ((principal), (api), (source_ip), (identity_type))
),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY dimension ORDER BY calls DESC, name) AS position
    FROM grouped
)
SELECT
    dimension, name, principal_type, calls, apis, principals, errors, error_rate, reads, writes, unknown, accounts,
    regions, region_list, source_ips, source_ip_list, principal_list, sessions, session_names, first_seen,
    last_seen, position
FROM ranked
WHERE position <= $limit
ORDER BY dimension, position
