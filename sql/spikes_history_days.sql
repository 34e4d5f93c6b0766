-- title: Per-day minute statistics of candidate spike series
-- description: For the series of one account and region listed in the table spike_series (insight_type, account, region, eventsource, eventname, errorcode; the caller provides it, e.g. as a VALUES list on Athena), per day from $history_start to the day before $day: calls, the sum of squared per-minute counts, the busiest minute, and for the longer windows of the spike detector (10 and 60 minutes) the busiest window and the sum of squared counts of consecutive windows, counted as in spikes_day_minutes. Quiet minutes count as zero, so mean and variance over any set of days follow from these sums: a window's own variance, since the minutes of a burst are not independent. The busiest window is taken over windows laid twice, the second shifted by half a width: at least 3/4 of the busiest sliding window, without a window frame. Account and region are bound so that only their partitions are read, whatever the join order.
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
),
buckets AS (
    SELECT p.insight_type, p.account, p.region, p.eventsource, p.eventname, p.errorcode, p.event_date, w.width,
           w.shift, floor((hour(p.minute) * 60 + minute(p.minute) + w.shift) / w.width) AS bucket,
           sum(p.calls) AS calls
    FROM per_minute AS p
    CROSS JOIN (VALUES (10, 0), (10, 5), (60, 0), (60, 30)) AS w (width, shift)
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
),
window_peaks AS (
    SELECT insight_type, account, region, eventsource, eventname, errorcode, event_date,
           max(CASE WHEN width = 10 THEN calls END) AS peak_10,
           max(CASE WHEN width = 60 THEN calls END) AS peak_60,
           sum(CASE WHEN width = 10 AND shift = 0 THEN calls * calls END) AS sum_squares_10,
           sum(CASE WHEN width = 60 AND shift = 0 THEN calls * calls END) AS sum_squares_60
    FROM buckets
    GROUP BY 1, 2, 3, 4, 5, 6, 7
),
days AS (
    SELECT insight_type, account, region, eventsource, eventname, errorcode, event_date,
           sum(calls) AS calls,
           sum(calls * calls) AS sum_squares,
           max(calls) AS peak_minute
    FROM per_minute
    GROUP BY 1, 2, 3, 4, 5, 6, 7
)
SELECT d.insight_type, d.account, d.region, d.eventsource, d.eventname, d.errorcode, d.event_date,
       d.calls, d.sum_squares, d.peak_minute, w.peak_10, w.peak_60, w.sum_squares_10, w.sum_squares_60
FROM days AS d
JOIN window_peaks AS w
    ON d.insight_type = w.insight_type AND d.account = w.account AND d.region = w.region
    AND d.eventsource = w.eventsource AND d.eventname = w.eventname AND d.errorcode = w.errorcode
    AND d.event_date = w.event_date
ORDER BY 1, 2, 3, 4, 5, 6, 7
