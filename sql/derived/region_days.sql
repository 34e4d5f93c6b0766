-- title: Regions used per day
-- description: Per event date, account and region, the events recorded. Materialized per data file when the lake is written: the new-region check reads these few rows per file, not the events, to know where each account was active before.
-- parameters: none
SELECT
    event_date,
    account,
    region,
    count(*) AS events
FROM cloudtrail
GROUP BY ALL
