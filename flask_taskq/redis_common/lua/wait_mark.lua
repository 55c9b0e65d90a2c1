-- Before a caller of AsyncResult.get() blocks. KEYS[1]: the task's result key, KEYS[2]:
-- its waiting list (same hash tag). ARGV[1]: seconds the waiting list lives.
-- Returns the result document; with none yet, first adds a token to the waiting list,
-- which the worker that stores the final state moves onto the done list, waking the
-- caller (a document that is there but not final is the caller's to judge: it adds the
-- token itself, then reads again).
local doc = redis.call('GET', KEYS[1])
if not doc then
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return doc
