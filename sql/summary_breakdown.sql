-- title: The day per account and per region
-- description: For one UTC day, told apart by the dimension column ('account' or 'region', the value in name): events, failed calls, writes, root events, distinct principals, regions and accounts.
-- parameters: day
SELECT
    CASE WHEN GROUPING(account) = 0 THEN 'account' ELSE 'region' END AS dimension,
    coalesce(account, region) AS name,
    count(*) AS events,
    count(*) FILTER (WHERE failed) AS failed,
    count(*) FILTER (WHERE NOT readonly) AS writes,
    count(*) FILTER (WHERE useridentity.type = 'Root') AS root_events,
    count(DISTINCT principal) AS principals,
    count(DISTINCT region) AS regions,
    count(DISTINCT account) AS accounts
FROM cloudtrail_calls
WHERE event_date = $day
GROUP BY GROUPING SETS ((account), (region))
ORDER BY dimension, events DESC, name
