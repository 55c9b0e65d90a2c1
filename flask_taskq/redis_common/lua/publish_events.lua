-- Append a batch of task events to the events stream, trimmed to about MAXLEN.
-- KEYS[1]: the stream. ARGV[1]: MAXLEN. ARGV[2]: JSON array of events, each a flat
-- array [field, value, field, value, ...] of strings.
-- One call per batch: the client encodes one argument instead of one command per event.
local events = cjson.decode(ARGV[2])
for i = 1, #events do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(events[i]))
end
return #events
