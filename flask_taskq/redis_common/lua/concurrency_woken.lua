-- Confirm that woken messages of one concurrency key were sent to their queue: forget
-- their parked copies. KEYS: 1 waking (zset), 2 parked (hash), see concurrency.lua.
-- ARGV: the task ids. Only ids still waking are forgotten: one parked again meanwhile
-- (its reservation ran out) keeps its copy. Returns how many were forgotten.
local n = 0
for _, id in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('HDEL', KEYS[2], id)
    n = n + 1
  end
end
return n
