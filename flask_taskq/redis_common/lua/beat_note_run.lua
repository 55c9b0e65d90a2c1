-- Note a run of a periodic entry sent outside its schedule (run now) as its last run.
-- KEYS[1]: the entry's hash; ARGV: time sent, task id. Due times are left alone.
redis.call('HSET', KEYS[1], 'run_at', ARGV[1], 'run_id', ARGV[2])
return 1
