-- Store a batch of task states, then acknowledge the finished messages: store_results
-- and ack in one call, for a worker whose results live on its broker's Redis (one round
-- trip per batch instead of two). The states go first, as with two calls: an entry is
-- never acknowledged unless its task's state was written (an error stops the script
-- before the acks).
-- KEYS: the n result keys, then one key per stream to acknowledge in.
-- ARGV[1]: n; ARGV[2]: ttl seconds (0 = keep); ARGV[3]: group; ARGV[4]: consumer;
-- ARGV[5 .. 4+2n]: document and kind per result (see store_results); then, per stream,
-- how many ids, then the ids.
-- Returns {woken, then per stream the ids it did not acknowledge}.
-- include: store_results
-- include: ack
local n = tonumber(ARGV[1])
local group, consumer = ARGV[3], ARGV[4]
local out = {store_results(1, n, tonumber(ARGV[2]), 5)}
local at = 5 + 2 * n
for s = n + 1, #KEYS do
  local count = tonumber(ARGV[at])
  out[#out + 1] = ack_entries(KEYS[s], group, consumer, {unpack(ARGV, at + 1, at + count)})
  at = at + count + 1
end
return out
