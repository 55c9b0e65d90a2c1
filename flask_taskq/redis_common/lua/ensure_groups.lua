-- Create the consumer group ARGV[1] on every stream in KEYS that lacks it.
for _, key in ipairs(KEYS) do
  local ok = redis.pcall('XGROUP', 'CREATE', key, ARGV[1], '0', 'MKSTREAM')
  if type(ok) == 'table' and ok.err and not string.find(ok.err, 'BUSYGROUP') then
    return redis.error_reply(ok.err)
  end
end
return #KEYS
