-- Add a dead letter of the AMQP broker to the queue's dead-letter stream (the same store
-- and fields as dead_letter.lua, which moves one from a Redis stream), then trim the oldest
-- while the store holds more than ARGV[9] entries or more than ARGV[12] bytes (the newest
-- one is always kept).
-- KEYS[1]: dead-letter stream, KEYS[2]: the store's size in bytes.
-- ARGV: (unused), (unused), body, reason, task name, task id, queue, time, max dead letters,
-- worker (consumer name), traceback, max bytes.
-- Returns the number of dead letters trimmed.
local max_count, max_bytes = tonumber(ARGV[9]), tonumber(ARGV[12])

local function size_of(fields)
  local n = 0
  for i = 1, #fields do n = n + #fields[i] end
  return n
end

local total = tonumber(redis.call('GET', KEYS[2]))
if total == nil then
  total = 0
  local start = '-'
  while true do
    local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 1000)
    if #entries == 0 then break end
    for _, e in ipairs(entries) do total = total + size_of(e[2]) end
    start = '(' .. entries[#entries][1]
  end
end

local fields = {'body', ARGV[3], 'reason', ARGV[4], 'task', ARGV[5], 'id', ARGV[6],
                'queue', ARGV[7], 'time', ARGV[8], 'worker', ARGV[10], 'traceback', ARGV[11]}
redis.call('XADD', KEYS[1], '*', unpack(fields))
total = total + size_of(fields)

local length = redis.call('XLEN', KEYS[1])
local trimmed = 0
local keep_from = nil
while (length > max_count or total > max_bytes) and length > 1 do
  local start = keep_from and ('(' .. keep_from) or '-'
  local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 100)
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
  local ms, seq = string.match(keep_from, '(%d+)-(%d+)')
  redis.call('XTRIM', KEYS[1], 'MINID', ms .. '-' .. (tonumber(seq) + 1))
end
if total < 0 then total = 0 end
redis.call('SET', KEYS[2], total)
return trimmed
