-- Send the messages a finished batch makes (chain links), store its task states, then
-- acknowledge its messages: store_results and ack in one call, for a worker whose results
-- live on its broker's Redis (one round trip per batch instead of two or three). The
-- order is that of separate calls: the sends, then the states, then the acks; an error
-- stops the script, so an entry is never acknowledged unless its sends and its task's
-- state were written.
-- KEYS: the n result keys, then the s streams to send to (one per message), then one
-- key per stream to acknowledge in.
-- ARGV[1]: n; ARGV[2]: ttl seconds (0 = keep); ARGV[3]: group; ARGV[4]: consumer;
-- ARGV[5]: s; ARGV[6 .. 5+2n]: document and kind per result (see store_results); then
-- the s message bodies; then, per stream to acknowledge in, how many ids, then the ids.
-- Returns {woken, then per stream the ids it did not acknowledge}.
-- include: store_results
-- include: ack
local n, s = tonumber(ARGV[1]), tonumber(ARGV[5])
local group, consumer = ARGV[3], ARGV[4]
for k = 1, s do
  redis.call('XADD', KEYS[n + k], '*', 'm', ARGV[5 + 2 * n + k])
end
local out = {store_results(1, n, tonumber(ARGV[2]), 6)}
local at = 6 + 2 * n + s
for st = n + s + 1, #KEYS do
  local count = tonumber(ARGV[at])
  out[#out + 1] = ack_entries(KEYS[st], group, consumer, {unpack(ARGV, at + 1, at + count)})
  at = at + count + 1
end
return out
