-- title: New kinds of failure
-- description: Failures of one UTC day whose (eventSource, eventName, error code) did not occur from $since to the day before; new_error_code says whether the code itself was not seen at all in that window. With no history in the window every kind is new.
-- parameters: day, since
WITH today AS (
    SELECT
        principal,
        eventsource, eventname, errormessage, eventtime,
        error_code, error_family
    FROM cloudtrail_calls
    WHERE event_date = $day AND failed
),
earlier AS (
    SELECT DISTINCT
        eventsource, eventname,
        error_code
    FROM cloudtrail_calls
    WHERE event_date >= $since AND event_date < $day
        AND failed
),
kinds AS (
    SELECT
        eventsource,
        eventname,
        error_code,
        min(error_family) AS family,
        count(*) AS failures,
        count(DISTINCT principal) AS principals,
        min(errormessage) AS sample_message,
        min(eventtime) AS first_seen,
        max(eventtime) AS last_seen
    FROM today
    GROUP BY eventsource, eventname, error_code
)
SELECT
    k.eventsource,
    k.eventname,
    k.error_code,
    k.family,
    k.failures,
    k.principals,
    k.sample_message,
    k.first_seen,
    k.last_seen,
    NOT EXISTS (SELECT 1 FROM earlier e WHERE e.error_code = k.error_code) AS new_error_code
FROM kinds k
WHERE NOT EXISTS (
    SELECT 1 FROM earlier e
    WHERE e.eventsource = k.eventsource AND e.eventname = k.eventname AND e.error_code = k.error_code
)
ORDER BY k.failures DESC, k.eventsource, k.eventname, k.error_code
