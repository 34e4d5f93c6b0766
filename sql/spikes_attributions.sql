-- title: Spike attributions
-- description: For each window of one account and region in the table spike_windows (insight_id, window_kind 'insight' or 'baseline', insight_type, account, region, eventsource, eventname, errorcode, window_start, window_end; provided by the caller), the calls counted as in spikes_day_minutes, by userIdentity ARN, user agent and error code: the top five values of each with their calls, and the window's total calls.
-- parameters: first_day, last_day, account, region
WITH matched AS (
    SELECT w.insight_id, w.window_kind, c.useridentity.arn AS arn, c.useragent, nullif(c.errorcode, '') AS errorcode
    FROM cloudtrail AS c
    JOIN spike_windows AS w
        ON c.account = w.account AND c.region = w.region AND c.eventsource = w.eventsource
        AND c.eventname = w.eventname AND c.eventtime >= w.window_start AND c.eventtime < w.window_end
    WHERE c.event_date >= $first_day AND c.event_date <= $last_day AND c.account = $account AND c.region = $region
        AND coalesce(c.managementevent, true)
        AND coalesce(c.eventtype, 'AwsApiCall') = 'AwsApiCall'
        AND ((w.insight_type = 'ApiCallRateInsight' AND NOT c.readonly)
            OR (w.insight_type = 'ApiErrorRateInsight' AND c.errorcode = w.errorcode))
),
counted AS (
    SELECT insight_id, window_kind, 'userIdentityArn' AS attribute, coalesce(arn, 'null') AS value, count(*) AS calls
    FROM matched GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT insight_id, window_kind, 'userAgent', coalesce(useragent, 'null'), count(*)
    FROM matched GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT insight_id, window_kind, 'errorCode', coalesce(errorcode, 'null'), count(*)
    FROM matched GROUP BY 1, 2, 3, 4
),
ranked AS (
    SELECT
        insight_id, window_kind, attribute, value, calls,
        row_number() OVER (PARTITION BY insight_id, window_kind, attribute ORDER BY calls DESC, value) AS position,
        sum(calls) OVER (PARTITION BY insight_id, window_kind, attribute) AS window_calls
    FROM counted
)
SELECT insight_id, window_kind, attribute, value, calls, position, window_calls
FROM ranked
WHERE position <= 5
ORDER BY insight_id, window_kind, attribute, position
