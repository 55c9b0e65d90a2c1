-- Delete the messages of streams KEYS not yet delivered to group ARGV[1]; leased ones stay
-- with their workers. Returns how many were deleted.
local deleted = 0
for _, key in ipairs(KEYS) do
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
  end
end
return deleted
