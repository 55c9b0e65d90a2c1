-- Delete the messages of streams KEYS[1..n-1] not yet delivered to group ARGV[1] (leased
-- ones stay with their workers) and the delayed set KEYS[n]. Returns how many were deleted.
-- include: drop_if_empty
local deleted = redis.call('ZCARD', KEYS[#KEYS])
redis.call('DEL', KEYS[#KEYS])
for i = 1, #KEYS - 1 do
  local key = KEYS[i]
  if redis.call('EXISTS', key) == 1 then
    local start = '-'
    local groups = redis.call('XINFO', 'GROUPS', key)
    for _, g in ipairs(groups) do
      local info = {}
      for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
      if info['name'] == ARGV[1] then start = '(' .. info['last-delivered-id'] end
    end
    while true do
      local entries = redis.call('XRANGE', key, start, '+', 'COUNT', 500)
      if #entries == 0 then break end
      for _, e in ipairs(entries) do redis.call('XDEL', key, e[1]) end
      deleted = deleted + #entries
      start = '(' .. entries[#entries][1]
    end
    drop_if_empty(key, ARGV[1])
  end
end
return deleted
