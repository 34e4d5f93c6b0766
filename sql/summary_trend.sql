-- title: The week up to a day
-- description: Events and failed calls (an error code or an error message, as the headline counts them) per UTC day from $since to $day, for the page's 7-day trend. Days without events are absent.
-- parameters: day, since
SELECT
    event_date AS day,
    count(*) AS events,
    count(*) FILTER (WHERE failed) AS failed
FROM cloudtrail_calls
WHERE event_date >= $since AND event_date <= $day
GROUP BY event_date
ORDER BY event_date
