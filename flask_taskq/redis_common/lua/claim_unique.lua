-- Take a unique key for task ARGV[1] for ARGV[2] seconds unless a task holds it already.
-- KEYS[1]: the lock. Returns the holder's task id, or nil when this task took the key.
-- Used on a Redis Cluster, where the lock and the queue are in different slots: the
-- caller sends the message after taking the key (enqueue_unique.lua does both at once on
-- a single Redis).
local owner = redis.call('GET', KEYS[1])
if owner then return owner end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
