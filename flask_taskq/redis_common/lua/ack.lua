-- Acknowledge and delete entries ARGV[3..] of stream KEYS[1] that consumer ARGV[2] still
-- owns in group ARGV[1] (see the included ack_entries). Returns the ids it did not
-- acknowledge.
-- include: ack
return ack_entries(KEYS[1], ARGV[1], ARGV[2], {unpack(ARGV, 3)})
