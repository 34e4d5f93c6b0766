-- title: Library detections: matching events
-- description: The events of one UTC day that a detection of the library (sql/detections/*.yaml) matches, from the derived table detection_events (one boolean column per detection), in time order.
-- parameters: day
SELECT *
FROM detection_events
WHERE event_date = $day
ORDER BY eventtime, eventid
