-- title: Failed API calls
-- description: For one UTC day, in one scan, failures told apart by the dimension column: 'error_code' (each error code, or the error message when a failure has none, as failed console sign-ins, with its family: access_denied, authentication, throttling, not_found, conflict, limits, invalid_request, service_error, dry_run, other), 'api' and 'principal' (both with all calls, so failure rates are true rates): failures, denied (access_denied and authentication families) with the distinct APIs denied, throttled, not found, principals and APIs involved, error codes, a sample message, first and last failure. The top $limit of each, by failures. Then every 'new_kind': a (eventSource, eventName, error code) failing today that did not fail from $since to the day before (from failure_kinds; with no history in that window every kind is new), new_error_code saying whether the code itself was not seen at all.
-- parameters: day, limit, since
-- arrays: error_codes
WITH events AS (
    SELECT
        principal,
        coalesce(useridentity.type, 'Unknown') AS identity_type,
        eventsource, eventname,
        coalesce(eventsource, '(missing)') || ':' || coalesce(eventname, '(missing)') AS api,
        errormessage, eventtime,
        error_code,
        error_family AS family
    FROM cloudtrail_calls
    WHERE event_date = $day
),
grouped AS (
    SELECT
        CASE
            WHEN grouping(eventsource) = 0 THEN 'new_kind'
            WHEN grouping(error_code) = 0 THEN 'error_code'
            WHEN grouping(api) = 0 THEN 'api'
            ELSE 'principal'
        END AS dimension,
        coalesce(error_code, api, principal) AS name,
        eventsource,
        eventname,
        error_code,
        min(family) AS family,
        min(identity_type) AS principal_type,
        count(*) AS calls,
        count(error_code) AS failures,
        round(CAST(count(error_code) AS DOUBLE) / count(*), 4) AS failure_rate,
        count(*) FILTER (WHERE family IN ('access_denied', 'authentication')) AS denied,
        count(DISTINCT api) FILTER (WHERE family IN ('access_denied', 'authentication')) AS denied_apis,
        count(*) FILTER (WHERE family = 'throttling') AS throttled,
        count(*) FILTER (WHERE family = 'not_found') AS not_found,
        count(DISTINCT principal) FILTER (WHERE error_code IS NOT NULL) AS principals,
        count(DISTINCT api) FILTER (WHERE error_code IS NOT NULL) AS apis,
        array_agg(DISTINCT error_code) FILTER (WHERE error_code IS NOT NULL) AS error_codes,
        min(errormessage) AS sample_message,
        min(eventtime) FILTER (WHERE error_code IS NOT NULL) AS first_failure,
        max(eventtime) FILTER (WHERE error_code IS NOT NULL) AS last_failure
    FROM events
    GROUP BY GROUPING SETS ((error_code), (api), (principal), (eventsource, eventname, error_code))
),
earlier AS (
    SELECT DISTINCT eventsource, eventname, error_code
    FROM failure_kinds
    WHERE event_date >= $since AND event_date < $day
),
ranked AS (
    SELECT
        *,
        row_number() OVER (PARTITION BY dimension ORDER BY failures DESC, name, eventsource, eventname)
            AS position
    FROM grouped
    WHERE failures > 0
        AND (dimension <> 'new_kind' OR NOT EXISTS (
            SELECT 1 FROM earlier AS e
            WHERE e.eventsource = grouped.eventsource AND e.eventname = grouped.eventname
                AND e.error_code = grouped.error_code))
)
SELECT
    dimension, name, eventsource, eventname, error_code, family, principal_type, calls, failures, failure_rate,
    denied, denied_apis, throttled, not_found, principals, apis, error_codes, sample_message, first_failure,
    last_failure, position,
    dimension = 'new_kind' AND NOT EXISTS (
        SELECT 1 FROM earlier AS e WHERE e.error_code = ranked.error_code) AS new_error_code
FROM ranked
WHERE position <= $limit OR dimension = 'new_kind'
ORDER BY dimension, position
