-- Forget where a task's attempt started, if it started from this stream entry: the worker
-- itself hands the message back under a new entry id (flask_taskq/worker/replay.py).
-- KEYS[1]: the task's seen key. ARGV[1]: attempt, ARGV[2]: '<stream> <entry id>'.
if redis.call('GET', KEYS[1]) == ARGV[1] .. ' ' .. ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
