-- title: Security monitoring: matching events of the days before
-- description: The security_flags rows of the days in [$since, $day), to tell new findings from routine ones and to weigh a finding's count against the principal's own history.
-- parameters: since, day
SELECT *
FROM security_flags
WHERE event_date >= $since AND event_date < $day
ORDER BY eventtime, eventid
