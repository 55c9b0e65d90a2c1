-- Move a held message to the dead-letter stream with its reason, and drop it from its queue.
-- KEYS[1]: stream, KEYS[2]: dead-letter stream.
-- ARGV: group, entry id, body, reason, task name, task id, queue, time, max dead letters,
-- worker (consumer name), traceback.
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[9], '*',
           'body', ARGV[3], 'reason', ARGV[4], 'task', ARGV[5], 'id', ARGV[6],
           'queue', ARGV[7], 'time', ARGV[8], 'worker', ARGV[10], 'traceback', ARGV[11])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
