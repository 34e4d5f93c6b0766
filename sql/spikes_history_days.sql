-- title: Per-day minute statistics of candidate spike series
-- description: For the series of one account and region listed in the table spike_series (insight_type, account, region, eventsource, eventname, errorcode; the caller provides it, e.g. as a VALUES list on Athena), per day from $history_start to the day before $day: calls, the sum of squared per-minute counts and the busiest minute, counted as in spikes_day_minutes. Quiet minutes count as zero, so mean and variance over any set of days follow from these sums. Account and region are bound so that only their partitions are read, whatever the join order.
-- parameters: history_start, day, account, region
WITH management AS (
    SELECT account, region, eventsource, eventname, readonly, nullif(errorcode, '') AS errorcode, event_date,
           date_trunc('minute', eventtime) AS minute
    FROM cloudtrail
    WHERE event_date >= $history_start AND event_date < $day AND account = $account AND region = $region
        AND coalesce(managementevent, true)
        AND coalesce(eventtype, 'AwsApiCall') = 'AwsApiCall'
        AND (NOT readonly OR coalesce(errorcode, '') <> '')
),
per_minute AS (
    SELECT s.insight_type, s.account, s.region, s.eventsource, s.eventname, s.errorcode, m.event_date, m.minute,
           count(*) AS calls
    FROM management AS m
    JOIN spike_series AS s
        ON m.account = s.account AND m.region = s.region AND m.eventsource = s.eventsource
        AND m.eventname = s.eventname
        AND ((s.insight_type = 'ApiCallRateInsight' AND NOT m.readonly)
            OR (s.insight_type = 'ApiErrorRateInsight' AND m.errorcode = s.errorcode))
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
)
SELECT
    insight_type, account, region, eventsource, eventname, errorcode, event_date,
    sum(calls) AS calls,
    sum(calls * calls) AS sum_squares,
    max(calls) AS peak_minute
FROM per_minute
GROUP BY 1, 2, 3, 4, 5, 6, 7
ORDER BY 1, 2, 3, 4, 5, 6, 7
