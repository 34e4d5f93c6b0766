-- title: Per-day minute statistics of candidate spike series
-- description: For the series of one account and region listed in the table spike_series (insight_type, account, region, eventsource, eventname, errorcode; the caller provides it, e.g. as a VALUES list on Athena), per day from $history_start to the day before $day: calls, the sum of squared per-minute counts and the busiest minute, counted as in spikes_day_minutes. Quiet minutes count as zero, so mean and variance over any set of days follow from these sums. Account and region are bound so that only their partitions are read, whatever the join order.
-- parameters: history_start, day, account, region
WITH per_minute AS (
    SELECT s.insight_type, s.account, s.region, s.eventsource, s.eventname, s.errorcode, m.event_date, m.minute,
           sum(m.calls) AS calls
    FROM insight_minutes AS m
    JOIN spike_series AS s
        ON m.account = s.account AND m.region = s.region AND m.insight_type = s.insight_type
        AND m.eventsource = s.eventsource AND m.eventname = s.eventname AND m.errorcode = s.errorcode
    WHERE m.event_date >= $history_start AND m.event_date < $day AND m.account = $account AND m.region = $region
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
