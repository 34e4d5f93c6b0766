-- title: Top API calls
-- description: The ten most called APIs in the lake, with their failure count.
-- parameters: none
SELECT
    eventsource,
    eventname,
    count(*) AS calls,
    count(*) FILTER (WHERE errorcode IS NOT NULL AND errorcode <> '') AS failed
FROM cloudtrail
GROUP BY eventsource, eventname
ORDER BY calls DESC, eventsource, eventname
LIMIT 10
