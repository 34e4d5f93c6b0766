-- title: Password spraying
-- description: Source IPs whose failed console sign-ins (errorMessage 'Failed authentication', the day's cis_4_6 rows of security_flags) in one account and UTC day name at least $min_users distinct user names (CloudTrail writes HIDDEN_DUE_TO_SECURITY_REASONS for names that do not exist, counted once). Grouping by source keeps apart the everyday typos of many users from many places.
-- parameters: day, min_users
WITH failed AS (
    SELECT
        account, eventtime, coalesce(sourceipaddress, 'unknown') AS source_ip,
        coalesce(user_name, principal_id, 'unknown') AS user_name
    FROM security_flags
    WHERE event_date = $day AND cis_4_6
)
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
HAVING count(DISTINCT user_name) >= $min_users
ORDER BY user_names DESC, account, source_ip
