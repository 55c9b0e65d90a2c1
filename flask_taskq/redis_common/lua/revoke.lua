-- Revoke task ids ARGV[2..] in the sorted set KEYS[1] (taskq:revoked or
-- taskq:revoked:terminate), scored by Redis's clock, never by the sender's: workers read
-- only scores at or above the newest they have seen, so a score must never go back. It is
-- Redis's time, or just above the newest score in the set when that is later (a Redis whose
-- clock stepped back, a failover to a host behind, scores written by an earlier version).
-- Entries older than ARGV[1] seconds are trimmed. Returns the score given.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local top = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #top == 2 and tonumber(top[2]) >= now then now = tonumber(top[2]) + 0.000001 end
local score = string.format('%.6f', now)
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], score, ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf',
           string.format('(%.6f', now - tonumber(ARGV[1])))
return score
