-- title: API calls and errors per minute
-- description: For one UTC day, per account, region, eventSource and eventName, the management calls of each minute as CloudTrail Insights counts them (see insight_minutes): write calls for ApiCallRateInsight, failed calls per error code for ApiErrorRateInsight. A minute without calls is absent, i.e. zero.
-- parameters: day
SELECT insight_type, account, region, eventsource, eventname, errorcode, minute, sum(calls) AS calls
FROM insight_minutes
WHERE event_date = $day
GROUP BY 1, 2, 3, 4, 5, 6, 7
ORDER BY 1, 2, 3, 4, 5, 6, 7
