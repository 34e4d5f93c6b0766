-- title: Kinds of failure
-- description: Per event date, account, region, eventSource, eventName and error code (errorCode, else errorMessage, as in cloudtrail_calls), the failed calls and their family. Materialized per data file when the lake is written, so a kind can span several rows: sum them.
-- parameters: none
SELECT
    event_date,
    account,
    region,
    eventsource,
    eventname,
    error_code,
    min(error_family) AS error_family,
    count(*) AS failures
FROM cloudtrail_calls
WHERE failed
GROUP BY 1, 2, 3, 4, 5, 6
ORDER BY 1, 2, 3, 4, 5, 6
