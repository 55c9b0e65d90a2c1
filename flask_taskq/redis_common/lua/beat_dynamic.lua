-- Change the run-time periodic entries KEYS[1] (hash name -> JSON spec) and, when done,
-- raise their version counter KEYS[2] so that beats reload them.
-- ARGV: mode ('add': only if absent, 'replace': only if present, 'remove'), name, spec.
-- Returns 1 when done, 0 when the entry exists ('add') or does not ('replace', 'remove').
local exists = redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1
if ARGV[1] == 'add' then
  if exists then return 0 end
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
elseif ARGV[1] == 'replace' then
  if not exists then return 0 end
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
else
  if not exists then return 0 end
  redis.call('HDEL', KEYS[1], ARGV[2])
end
redis.call('INCR', KEYS[2])
return 1
