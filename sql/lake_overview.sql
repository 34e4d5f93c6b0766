-- title: Lake overview
-- description: Per event date: events, failed calls (an error code or an error message, as the daily report counts them) and their share, distinct principals, accounts and regions.
-- parameters: none
SELECT
    event_date,
    count(*) AS events,
    count(*) FILTER (WHERE failed) AS failed,
    round(100.0 * count(*) FILTER (WHERE failed) / count(*), 2) AS failed_pct,
    count(DISTINCT principal) AS principals,
    count(DISTINCT account) AS accounts,
    count(DISTINCT region) AS regions
FROM cloudtrail_calls
GROUP BY event_date
ORDER BY event_date
