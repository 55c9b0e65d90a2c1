-- Store a batch of task states. KEYS: each task's result key. ARGV[1]: ttl seconds
-- (0 = keep); then per task two ARGV: the encoded document and its kind (see the
-- included store_results). Returns how many waiters it woke.
-- include: store_results
return store_results(1, #KEYS, tonumber(ARGV[1]), 2)
