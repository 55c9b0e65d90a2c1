-- Delete consumer ARGV[2] from group ARGV[1] of each stream of KEYS where it holds no
-- pending entry. Deleting a consumer deletes its pending entries, and such messages would
-- never be delivered again: a consumer that still holds one is kept, for the entry to be
-- reclaimed. Returns how many streams kept it.
local group, consumer = ARGV[1], ARGV[2]
local kept = 0
for _, key in ipairs(KEYS) do
  local p = redis.pcall('XPENDING', key, group, '-', '+', 1, consumer)
  if type(p) == 'table' and not p.err then
    if #p == 0 then
      redis.call('XGROUP', 'DELCONSUMER', key, group, consumer)
    else
      kept = kept + 1
    end
  end
end
return kept
