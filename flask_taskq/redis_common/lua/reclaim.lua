-- Take over entries whose lease expired (idle longer than ARGV[3] ms) in any stream of KEYS,
-- up to ARGV[4] entries, for consumer ARGV[2] of group ARGV[1]. With ARGV[5] > 0, then
-- delete from the group every other consumer that holds no entry and has not read for
-- ARGV[5] ms: what a killed worker leaves behind. Deleting a consumer drops what it holds,
-- so one that holds anything stays (for its entries to be taken over first); this runs in
-- the script, so nothing can reach a consumer between the check and its deletion, and a
-- live consumer deleted while idle is made again by its next read.
-- Returns a flat list: stream, entry id, body, delivery count, ... where body is the value
-- of the entry's field named m, or '' when it has none (the consumer dead-letters it),
-- then the number of consumers deleted.
local group, consumer, min_idle, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local prune_idle = tonumber(ARGV[5] or '0')
local pruned = 0
local out = {}
local function body_of(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'm' then return fields[i + 1] end
  end
  return ''
end
for _, key in ipairs(KEYS) do
  local cursor = '0-0'
  for _ = 1, 10 do
    if count <= 0 then break end
    local res = redis.pcall('XAUTOCLAIM', key, group, consumer, min_idle, cursor,
                            'COUNT', count)
    if type(res) == 'table' and res.err then break end
    for _, entry in ipairs(res[2]) do
      if entry[2] then
        local p = redis.call('XPENDING', key, group, entry[1], entry[1], 1)
        out[#out + 1] = key
        out[#out + 1] = entry[1]
        out[#out + 1] = body_of(entry[2])
        out[#out + 1] = p[1][4]
        count = count - 1
      else
        redis.call('XACK', key, group, entry[1])  -- deleted entry (Redis 6.2)
      end
    end
    cursor = res[1]
    if cursor == '0-0' then break end
  end
  if prune_idle > 0 then
    local consumers = redis.pcall('XINFO', 'CONSUMERS', key, group)
    if type(consumers) == 'table' and not consumers.err then
      for _, fields in ipairs(consumers) do
        local info = {}
        for i = 1, #fields, 2 do info[fields[i]] = fields[i + 1] end
        if info['name'] ~= consumer and info['pending'] == 0 and info['idle'] >= prune_idle then
          redis.call('XGROUP', 'DELCONSUMER', key, group, info['name'])
          pruned = pruned + 1
        end
      end
    end
  end
end
out[#out + 1] = pruned
return out
