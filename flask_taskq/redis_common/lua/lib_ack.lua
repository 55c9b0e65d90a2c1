-- Included by the scripts that acknowledge messages (their line naming it is replaced
-- by this text when the script is loaded: redis_common.script_source).
-- ack_entries(key, group, consumer, ids): acknowledge and delete the entries ``ids`` of
-- stream ``key`` that ``consumer`` still owns in ``group``. An entry another consumer
-- took over (this one's lease lapsed) is left to that consumer, and one no longer
-- pending is left alone. A stream of another priority than the default left empty is
-- deleted (data-model.rst). Returns the ids it did not acknowledge.
-- include: drop_if_empty
local function ack_entries(key, group, consumer, ids)
  local owned, skipped = {}, {}
  for i = 1, #ids do
    local p = redis.pcall('XPENDING', key, group, ids[i], ids[i], 1, consumer)
    if p.err == nil and #p > 0 then owned[#owned + 1] = ids[i] else skipped[#skipped + 1] = ids[i] end
  end
  if #owned > 0 then
    redis.call('XACK', key, group, unpack(owned))
    redis.call('XDEL', key, unpack(owned))
    drop_if_empty(key, group)
  end
  return skipped
end
