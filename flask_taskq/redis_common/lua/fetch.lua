-- Deliver up to ARGV[3] ready messages to consumer ARGV[2] of group ARGV[1].
-- KEYS: priority streams in the order to serve them (highest priority first).
-- A priority stream exists only while it holds messages, except a queue's default-priority
-- stream (its key ends with ARGV[4], e.g. ':p5'), which is made here when missing (new
-- queue, Redis restarted). A stream without the group gets it, from its first entry.
-- Returns a flat list: stream, entry id, body, stream, entry id, body, ... where body is the
-- value of the entry's field named m, or '' when it has none (the consumer dead-letters it);
-- then, as its last element, the list of the KEYS that exist (with the group), in order,
-- for the blocking read that follows when nothing was ready.
local group, consumer, count, anchor = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local out, live = {}, {}
local function body_of(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'm' then return fields[i + 1] end
  end
  return ''
end
for _, key in ipairs(KEYS) do
  if count <= 0 then break end
  -- EXISTS first: most priority streams are absent, and a read of one fails (costlier)
  local res, made = nil, false
  if redis.call('EXISTS', key) == 1 then
    res = redis.pcall('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count,
                      'STREAMS', key, '>')
    if type(res) == 'table' and res.err then  -- no group yet
      redis.call('XGROUP', 'CREATE', key, group, '0')
      made = true
    end
  elseif string.sub(key, -#anchor) == anchor then
    redis.call('XGROUP', 'CREATE', key, group, '0', 'MKSTREAM')
    made = true
  else
    key = nil
  end
  if made then
    res = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count,
                     'STREAMS', key, '>')
  end
  if key then live[#live + 1] = key end
  if res then
    for _, entry in ipairs(res[1][2]) do
      out[#out + 1] = key
      out[#out + 1] = entry[1]
      out[#out + 1] = body_of(entry[2])
      count = count - 1
    end
  end
end
out[#out + 1] = live
return out
