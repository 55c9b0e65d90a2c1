-- Renew every lease that consumer ARGV[2] holds in group ARGV[1] of the streams KEYS:
-- reset the idle time of its pending entries (XCLAIM to itself, JUSTID: no delivery is
-- counted), as renew.lua does for the entries a consumer names. A prefork supervisor
-- calls it for its live children, whose own renewal stops while a task holds the GIL.
-- Returns how many entries it renewed.
local group, consumer = ARGV[1], ARGV[2]
local page = 100
local renewed = 0
for _, key in ipairs(KEYS) do
  local start = '-'
  while true do
    local p = redis.pcall('XPENDING', key, group, start, '+', page, consumer)
    if type(p) ~= 'table' or p.err or #p == 0 then break end
    local ids = {}
    for i, entry in ipairs(p) do ids[i] = entry[1] end
    ids[#ids + 1] = 'JUSTID'
    redis.call('XCLAIM', key, group, consumer, 0, unpack(ids))
    renewed = renewed + #p
    if #p < page then break end
    start = '(' .. p[#p][1]
  end
end
return renewed
