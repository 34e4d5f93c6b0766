-- title: Password spraying
-- description: Source IPs whose failed console sign-ins (errorMessage 'Failed authentication', the day's cis_4_6 rows of security_flags) in one account and UTC day name at least $min_users distinct user names (CloudTrail writes HIDDEN_DUE_TO_SECURITY_REASONS for names that do not exist, counted once). Grouping by source keeps apart the everyday typos of many users from many places.
-- parameters: day, min_users
-- arrays: user_list
WITH failed AS (
    SELECT
        account, eventtime, coalesce(sourceipaddress, 'unknown') AS source_ip,
        coalesce(user_name, principal_id, 'unknown') AS user_name
    FROM security_flags
    WHERE event_date = $day AND cis_4_6
),
sources AS (
    SELECT
        account,
        source_ip,
        count(DISTINCT user_name) AS user_names,
        count(*) AS failures,
        array_agg(DISTINCT user_name) AS user_list,
        min(eventtime) AS first_seen,
        max(eventtime) AS last_seen
    FROM failed
    GROUP BY account, source_ip
)
-- the threshold is in WHERE, not HAVING: Athena binds execution parameters in WHERE clauses only
SELECT account, source_ip, user_names, failures, user_list, first_seen, last_seen
FROM sources
WHERE user_names >= $min_users
ORDER BY user_names DESC, account, source_ip
