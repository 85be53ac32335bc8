#!lua flags=allow-oom
--[[
  memory_delete_oldest: remove the oldest ACTIVE messages and return them.

  KEYS[1], KEYS[2], ARGV[1..7]  as every script (includes/prelude.lua)
  KEYS[3], KEYS[4]              the ACTIVE and ARCHIVED sets (includes/memory.lua)
  ARGV[8]    how many, n >= 0; archived messages are never touched

  Returns    {seqs, JSON texts} of the messages removed, oldest first: at most n, none when there
             is no active message (nothing changes then)
  Errors     those of the prelude; nothing changes
  Flags      allow-oom: a delete frees memory, so it runs when the server is out of it
  Cost       O((n + 1) log N): ZRANGE by rank, then HMGET, ZREM and HDEL of the n
]]
-- @include prelude
-- @include memory
local SCRIPT = 'memory_delete_oldest'

local n = integer_arg('n', ARGV[FIRST_ARG], 0)
local replayed, reply = begin(SCRIPT, 'hash', memory_commands())
if replayed then
  return reply
end

local seqs = oldest_active(n)
if #seqs == 0 then
  return { {}, {} }
end
local removed = messages_of(seqs)
remove_seqs(active_key, seqs)
return commit(SCRIPT, { seqs, removed }, rcall('HLEN', messages_key))
