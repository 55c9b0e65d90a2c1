-- Give up the beat leader lease KEYS[1] if token ARGV[1] holds it, so that a waiting beat
-- takes over at once. Returns 1 if it was released, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
