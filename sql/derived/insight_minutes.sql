-- title: Insights counts per minute
-- description: Per event date, account, region, eventSource, eventName and minute, the management calls as CloudTrail Insights counts them: write calls for ApiCallRateInsight (errorcode ''), failed calls per error code for ApiErrorRateInsight. Beyond what Insights counts, failed console sign-ins (which carry no error code: responseElements.ConsoleLogin is Failure) are error-rate calls of signin:ConsoleLogin with the code ConsoleLoginFailure, so a password-guessing burst is a spike. A minute without calls has no row. Materialized per data file when the lake is written, so a minute's calls can span several rows: sum them.
-- parameters: none
WITH management AS (
    SELECT event_date, account, region, eventsource, eventname, readonly,
           coalesce(eventtype, 'AwsApiCall') = 'AwsConsoleSignIn' AS signin,
           CASE WHEN coalesce(eventtype, 'AwsApiCall') = 'AwsConsoleSignIn' THEN 'ConsoleLoginFailure'
                ELSE nullif(errorcode, '') END AS errorcode,
           date_trunc('minute', eventtime) AS minute
    FROM cloudtrail
    WHERE coalesce(managementevent, true)
        AND ((coalesce(eventtype, 'AwsApiCall') = 'AwsApiCall' AND (NOT readonly OR coalesce(errorcode, '') <> ''))
             OR (eventtype = 'AwsConsoleSignIn' AND eventname = 'ConsoleLogin'
                 AND json_extract_scalar(responseelements, '$.ConsoleLogin') = 'Failure'))
)
SELECT
    m.event_date,
    m.account,
    m.region,
    t.insight_type,
    m.eventsource,
    m.eventname,
    CASE WHEN t.insight_type = 'ApiErrorRateInsight' THEN m.errorcode ELSE '' END AS errorcode,
    m.minute,
    count(*) AS calls
FROM management AS m
CROSS JOIN (VALUES ('ApiCallRateInsight'), ('ApiErrorRateInsight')) AS t (insight_type)
WHERE (t.insight_type = 'ApiCallRateInsight' AND NOT m.readonly AND NOT m.signin)
    OR (t.insight_type = 'ApiErrorRateInsight' AND m.errorcode IS NOT NULL)
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
ORDER BY 1, 2, 3, 4, 5, 6, 7, 8
