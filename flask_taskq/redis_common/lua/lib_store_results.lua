-- Included by the scripts that store task states (their line naming it is replaced by
-- this text when the script is loaded: redis_common.script_source).
-- store_results(first, n, ttl, at): store the states of KEYS[first .. first+n-1] (result
-- keys; a key's waiting and done lists are that key followed by ':waiting' and ':done',
-- same hash tag: the task id), whose documents and kinds are ARGV[at], ARGV[at+1] per
-- task: kind '0' a state that is not final, '1' a final (ready) state, '2' STARTED.
-- ttl: seconds, 0 = keep. Returns how many waiters it woke.
-- A final state wakes waiters: one token moves from the waiting list onto the done
-- list, which BLMOVE waiters block on. One EXISTS over the batch's waiting lists finds
-- whether anyone waits at all: usually nobody, and each result costs one SET.
-- STARTED never replaces a document that is not STARTED or RETRY (a final result, or a
-- state the task reported): the status names are plain bytes in every serializer.
local function final_state(doc)
  return string.find(doc, 'SUCCESS', 1, true) or string.find(doc, 'FAILURE', 1, true)
    or string.find(doc, 'REVOKED', 1, true)
end
local function store_results(first, n, ttl, at)
  local ready = {}
  for i = 0, n - 1 do
    local key, doc, kind = KEYS[first + i], ARGV[at + 2 * i], ARGV[at + 2 * i + 1]
    local write = true
    if kind == '2' then
      local old = redis.call('GET', key)
      if old then
        write = (string.find(old, 'STARTED', 1, true) or string.find(old, 'RETRY', 1, true))
          and not final_state(old)
      end
    end
    if write then
      if ttl > 0 then
        redis.call('SET', key, doc, 'EX', ttl)
      else
        redis.call('SET', key, doc)
      end
      if kind == '1' then ready[#ready + 1] = key end
    end
  end
  if #ready == 0 then return 0 end
  local waiting = {}
  for j = 1, #ready do waiting[j] = ready[j] .. ':waiting' end
  if redis.call('EXISTS', unpack(waiting)) == 0 then return 0 end
  local woken = 0
  for j = 1, #ready do
    local done = ready[j] .. ':done'
    if redis.call('LMOVE', waiting[j], done, 'LEFT', 'RIGHT') then
      if ttl > 0 then redis.call('EXPIRE', done, ttl) end
      woken = woken + 1
    end
  end
  return woken
end
