-- title: Password spraying
-- description: Source IPs whose failed console sign-ins (errorMessage 'Failed authentication', as CIS 4.6 counts them) in one account and UTC day name at least $min_users distinct user names (CloudTrail writes HIDDEN_DUE_TO_SECURITY_REASONS for names that do not exist, counted once). Grouping by source keeps apart the everyday typos of many users from many places. The sign-in events themselves are the account's rows of security_events (cis_4_6).
-- parameters: day, min_users
WITH failed AS (
    SELECT
        account, eventtime, coalesce(sourceipaddress, 'unknown') AS source_ip,
        coalesce(useridentity.username, useridentity.principalid, 'unknown') AS user_name
    FROM cloudtrail
    WHERE event_date = $day
        AND eventname = 'ConsoleLogin'
        AND errormessage = 'Failed authentication'
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
