-- Deliver up to ARGV[3] ready messages to consumer ARGV[2] of group ARGV[1].
-- KEYS: priority streams in the order to serve them (highest priority first).
-- Creates the consumer group on a stream that has none (new queue, Redis restarted).
-- Returns a flat list: stream, entry id, body, stream, entry id, body, ... where body is the
-- value of the entry's field named m, or '' when it has none (the consumer dead-letters it).
local group, consumer, count = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
local function body_of(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'm' then return fields[i + 1] end
  end
  return ''
end
for _, key in ipairs(KEYS) do
  if count <= 0 then break end
  local res = redis.pcall('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count,
                          'STREAMS', key, '>')
  if type(res) == 'table' and res.err then
    redis.call('XGROUP', 'CREATE', key, group, '0', 'MKSTREAM')
    res = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count,
                     'STREAMS', key, '>')
  end
  if res then
    for _, entry in ipairs(res[1][2]) do
      out[#out + 1] = key
      out[#out + 1] = entry[1]
      out[#out + 1] = body_of(entry[2])
      count = count - 1
    end
  end
end
return out
