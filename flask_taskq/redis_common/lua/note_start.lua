-- Count a start of a redelivered message. KEYS[1]: its start counter.
-- ARGV[1]: expiry in seconds. Returns the count including this start.
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return n
