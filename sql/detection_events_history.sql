-- title: Library detections: matching events of the days before
-- description: The detection_events rows of the days in [$since, $day), to tell new findings from routine ones and to weigh a finding's count against the principal's own history.
-- parameters: since, day
SELECT *
FROM detection_events
WHERE event_date >= $since AND event_date < $day
ORDER BY eventtime, eventid
