-- Delete dead letters ARGV[1..] from the dead-letter stream KEYS[1] and take their size off
-- the store's byte count KEYS[2] (see dead_letter.lua). Returns how many were deleted.
local deleted = 0
local total = tonumber(redis.call('GET', KEYS[2]))
for i = 1, #ARGV do
  local entries = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i], 'COUNT', 1)
  if #entries == 1 then
    if total ~= nil then
      for _, v in ipairs(entries[1][2]) do total = total - #v end
    end
    deleted = deleted + redis.call('XDEL', KEYS[1], ARGV[i])
  end
end
if total ~= nil then redis.call('SET', KEYS[2], math.max(total, 0)) end
return deleted
