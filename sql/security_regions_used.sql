-- title: Regions used
-- description: The account and region pairs with events on each day from $since to $day (UTC), from the region_days derived table: where each account was active before, for the first activity in a region.
-- parameters: since, day
SELECT event_date, account, region
FROM region_days
WHERE event_date BETWEEN $since AND $day
GROUP BY ALL
