-- title: Password spraying
-- description: Source IPs whose failed console sign-ins (console_login_failed rows of security_flags: an errorMessage, or responseElements.ConsoleLogin = Failure) in one account and UTC day name at least $min_users user names. CloudTrail hides names that do not exist (HIDDEN_DUE_TO_SECURITY_REASONS, or no user name with "No username found in supplied account"); each such failure counts as a name of its own, since a spray guesses names as well as passwords. Grouping by source keeps apart the everyday typos of many users from many places.
-- parameters: day, min_users
-- arrays: user_list
WITH failed AS (
    SELECT
        account, eventtime, coalesce(sourceipaddress, 'unknown') AS source_ip,
        coalesce(user_name, principal_id, 'unknown') AS user_name,
        coalesce(user_name, '') IN ('', 'HIDDEN_DUE_TO_SECURITY_REASONS')
            OR coalesce(errormessage, '') = 'No username found in supplied account' AS hidden
    FROM security_flags
    WHERE event_date = $day AND console_login_failed
),
sources AS (
    SELECT
        account,
        source_ip,
        count(DISTINCT user_name) FILTER (WHERE NOT hidden) + count(*) FILTER (WHERE hidden) AS user_names,
        count(*) FILTER (WHERE hidden) AS hidden_names,
        count(*) AS failures,
        array_agg(DISTINCT user_name) AS user_list,
        min(eventtime) AS first_seen,
        max(eventtime) AS last_seen
    FROM failed
    GROUP BY account, source_ip
)
-- the threshold is in WHERE, not HAVING: Athena binds execution parameters in WHERE clauses only
SELECT account, source_ip, user_names, hidden_names, failures, user_list, first_seen, last_seen
FROM sources
WHERE user_names >= $min_users
ORDER BY user_names DESC, account, source_ip
