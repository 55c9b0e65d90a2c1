-- Claim the due members of a delayed set for publishing to RabbitMQ (the AMQP broker).
-- KEYS[1]: the queue's delayed set (score: due unix time, member: priority digit + body).
-- ARGV[1]: now, ARGV[2]: most members to claim, ARGV[3]: the claim's expiry (unix time).
-- A claimed member stays in the set, due again at ARGV[3]: the claimer removes it once
-- RabbitMQ confirmed it, and if the claimer dies first another one publishes it then.
-- Returns {next due time or '-1' (after the claim), claimed members...}.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[3], member)
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local out = {'-1'}
if #first > 0 then out[1] = first[2] end
for _, member in ipairs(due) do out[#out + 1] = member end
return out
