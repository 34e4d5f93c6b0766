-- title: API calls and errors per minute
-- description: For one UTC day, per account, region, eventSource and eventName, the management calls of each minute as CloudTrail Insights counts them: write calls for ApiCallRateInsight, failed calls per error code for ApiErrorRateInsight. A minute without calls is absent, i.e. zero.
-- parameters: day
WITH management AS (
    SELECT account, region, eventsource, eventname, readonly, nullif(errorcode, '') AS errorcode,
           date_trunc('minute', eventtime) AS minute
    FROM cloudtrail
    WHERE event_date = $day
        AND coalesce(managementevent, true)
        AND coalesce(eventtype, 'AwsApiCall') = 'AwsApiCall'
        AND (NOT readonly OR coalesce(errorcode, '') <> '')
)
SELECT
    t.insight_type,
    m.account,
    m.region,
    m.eventsource,
    m.eventname,
    CASE WHEN t.insight_type = 'ApiErrorRateInsight' THEN m.errorcode ELSE '' END AS errorcode,
    m.minute,
    count(*) AS calls
FROM management AS m
CROSS JOIN (VALUES ('ApiCallRateInsight'), ('ApiErrorRateInsight')) AS t (insight_type)
WHERE (t.insight_type = 'ApiCallRateInsight' AND NOT m.readonly)
    OR (t.insight_type = 'ApiErrorRateInsight' AND m.errorcode IS NOT NULL)
GROUP BY 1, 2, 3, 4, 5, 6, 7
ORDER BY 1, 2, 3, 4, 5, 6, 7
