-- title: Security monitoring: matching events
-- description: The events of one UTC day that a security control flags (see security_flags: one boolean column per CIS control and per-event extra), in time order.
-- parameters: day
SELECT *
FROM security_flags
WHERE event_date = $day
ORDER BY eventtime, eventid
