-- Put held messages back at the tail of their stream, as new entries, and drop the old ones.
-- KEYS[1]: stream. ARGV[1]: group, then pairs of (entry id, body).
local group = ARGV[1]
for i = 2, #ARGV, 2 do
  redis.call('XADD', KEYS[1], '*', 'm', ARGV[i + 1])
  redis.call('XACK', KEYS[1], group, ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
end
return (#ARGV - 1) / 2
