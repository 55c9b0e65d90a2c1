-- Store a STARTED document. KEYS[1]: the task's result key. ARGV[1]: the document,
-- ARGV[2]: ttl seconds (0 = keep).
-- It never replaces a document that is not STARTED or RETRY (a final result, or a state
-- the task reported): the status names are plain bytes in every serializer's output.
local old = redis.call('GET', KEYS[1])
if old then
  local final = string.find(old, 'SUCCESS', 1, true) or string.find(old, 'FAILURE', 1, true)
    or string.find(old, 'REVOKED', 1, true)
  local before = string.find(old, 'STARTED', 1, true) or string.find(old, 'RETRY', 1, true)
  if final or not before then return 0 end
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
