-- Included by the scripts that remove a stream's last entry (their line naming it is
-- replaced by this text when the script is loaded: redis_common.script_source).
local function drop_if_empty(key, group)
  -- a priority stream other than the default one (':p5') goes once it holds nothing
  if string.sub(key, -3) ~= ':p5' and redis.call('XLEN', key) == 0 then
    local pending = redis.pcall('XPENDING', key, group)
    if pending.err == nil and pending[1] == 0 then redis.call('DEL', key) end
  end
end
