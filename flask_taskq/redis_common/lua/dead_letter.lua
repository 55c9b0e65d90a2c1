-- Move a held message to the dead-letter stream with its reason, and drop it from its queue;
-- then trim the oldest dead letters while the store holds more than ARGV[9] entries or more
-- than ARGV[12] bytes (the newest one is always kept).
-- KEYS[1]: stream, KEYS[2]: dead-letter stream, KEYS[3]: the store's size in bytes (the sum
-- of the lengths of every entry's field names and values). Called with two keys (the
-- dead-letter stream and the size) for a message that is in no stream (the AMQP broker's):
-- it is only added.
-- ARGV: group, entry id, body, reason, task name, task id, queue, time, max dead letters,
-- worker (consumer name), traceback, max bytes.
-- Only an entry that consumer ARGV[10] still owns moves (one another consumer took over,
-- when this one's lease lapsed, stays with it).
-- Returns {1 if moved else 0, dead letters trimmed}.
-- include: drop_if_empty
local group, entry_id, consumer = ARGV[1], ARGV[2], ARGV[10]
local max_count, max_bytes = tonumber(ARGV[9]), tonumber(ARGV[12])
local source = #KEYS == 3 and KEYS[1] or nil
local dead, size_key = KEYS[#KEYS - 1], KEYS[#KEYS]
if source then
  local p = redis.pcall('XPENDING', source, group, entry_id, entry_id, 1, consumer)
  if p.err ~= nil or #p == 0 then return {0, 0} end
end

local function size_of(fields)
  local n = 0
  for i = 1, #fields do n = n + #fields[i] end
  return n
end

local total = tonumber(redis.call('GET', size_key))
if total == nil then  -- first use, or a store older than the byte count: count it once
  total = 0
  local start = '-'
  while true do
    local entries = redis.call('XRANGE', dead, start, '+', 'COUNT', 1000)
    if #entries == 0 then break end
    for _, e in ipairs(entries) do total = total + size_of(e[2]) end
    start = '(' .. entries[#entries][1]
  end
end

local fields = {'body', ARGV[3], 'reason', ARGV[4], 'task', ARGV[5], 'id', ARGV[6],
                'queue', ARGV[7], 'time', ARGV[8], 'worker', consumer, 'traceback', ARGV[11]}
redis.call('XADD', dead, '*', unpack(fields))
if source then
  redis.call('XACK', source, group, entry_id)
  redis.call('XDEL', source, entry_id)
  drop_if_empty(source, group)
end
total = total + size_of(fields)

local length = redis.call('XLEN', dead)
local trimmed = 0
local keep_from = nil
while (length > max_count or total > max_bytes) and length > 1 do
  local start = keep_from and ('(' .. keep_from) or '-'
  local entries = redis.call('XRANGE', dead, start, '+', 'COUNT', 100)
  if #entries == 0 then break end
  for _, e in ipairs(entries) do
    if not ((length > max_count or total > max_bytes) and length > 1) then break end
    total = total - size_of(e[2])
    length = length - 1
    trimmed = trimmed + 1
    keep_from = e[1]
  end
end
if keep_from then
  -- every entry up to keep_from goes; MINID keeps ids >= its argument
  local ms, seq = string.match(keep_from, '(%d+)-(%d+)')
  redis.call('XTRIM', dead, 'MINID', ms .. '-' .. (tonumber(seq) + 1))
end
if total < 0 then total = 0 end
redis.call('SET', size_key, total)
return {1, trimmed}
