-- title: Lake overview
-- description: Per event date: events, failed calls and their share, distinct principals, accounts and regions.
-- parameters: none
SELECT
    event_date,
    count(*) AS events,
    count(*) FILTER (WHERE errorcode IS NOT NULL AND errorcode <> '') AS failed,
    round(100.0 * count(*) FILTER (WHERE errorcode IS NOT NULL AND errorcode <> '') / count(*), 2) AS failed_pct,
    count(DISTINCT useridentity.arn) AS principals,
    count(DISTINCT account) AS accounts,
    count(DISTINCT region) AS regions
FROM cloudtrail
GROUP BY event_date
ORDER BY event_date
