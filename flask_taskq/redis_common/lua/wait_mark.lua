-- Before a caller of AsyncResult.get() blocks. KEYS[1]: the task's result key, KEYS[2]:
-- its waiting mark (same hash tag). ARGV[1]: seconds the mark lives.
-- Returns the result document; with none yet, sets the mark first, so that the worker
-- that stores the final state pushes the done list (a document that is there but not
-- final is the caller's to judge: it sets the mark itself, then reads again).
local doc = redis.call('GET', KEYS[1])
if not doc then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
end
return doc
