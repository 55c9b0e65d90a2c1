-- Send dead letters back to their queue as new messages, and drop them from the store.
-- KEYS[1]: dead-letter stream; KEYS[2..11]: the queue's streams of priority 0..9 (one
-- queue, one hash tag); KEYS[12]: the store's byte count (see dead_letter.lua), which
-- loses each moved entry's size. ARGV: pairs of (dead-letter entry id, priority 0-9).
-- Entries no longer in the store (or without a body) are skipped. Returns how many moved.
local function wake(anchor)
  -- idle workers block only on the streams that exist: wake them for a new one
  local id = redis.call('XADD', anchor, 'NOMKSTREAM', '*', 'w', '')
  if id then redis.call('XDEL', anchor, id) end
end
local moved = 0
local total = tonumber(redis.call('GET', KEYS[12]))
for i = 1, #ARGV, 2 do
  local entries = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i], 'COUNT', 1)
  if #entries == 1 then
    local fields = entries[1][2]
    local body = nil
    for j = 1, #fields, 2 do
      if fields[j] == 'body' then body = fields[j + 1] end
    end
    local stream = KEYS[tonumber(ARGV[i + 1]) + 2]
    if body and stream then
      local new = stream ~= KEYS[7] and redis.call('EXISTS', stream) == 0
      redis.call('XADD', stream, '*', 'm', body)
      if new then wake(KEYS[7]) end
      redis.call('XDEL', KEYS[1], ARGV[i])
      moved = moved + 1
      if total ~= nil then
        for j = 1, #fields do total = total - #fields[j] end
      end
    end
  end
end
if total ~= nil then redis.call('SET', KEYS[12], math.max(total, 0)) end
return moved
