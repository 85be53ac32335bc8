#!lua
--[[
  memory_archive_oldest: move the oldest ACTIVE messages to ARCHIVED and return them. Each keeps
  its seq, so its place in time among the archived ones.

  KEYS[1], KEYS[2], ARGV[1..7]  as every script (includes/prelude.lua)
  KEYS[3], KEYS[4]              the ACTIVE and ARCHIVED sets (includes/memory.lua)
  ARGV[8]    how many, n >= 0

  Returns    {seqs, JSON texts} of the messages archived, oldest first: at most n, none when
             there is no active message (nothing changes then)
  Errors     those of the prelude; nothing changes
  Cost       O((n + 1) log N): ZRANGE by rank, HMGET, then ZREM and ZADD of the n seqs; no message
             is copied
]]
-- @include prelude
-- @include memory
local SCRIPT = 'memory_archive_oldest'

local n = integer_arg('n', ARGV[FIRST_ARG], 0)
local replayed, reply = begin(SCRIPT, 'hash', memory_commands())
if replayed then
  return reply
end

local seqs = oldest_active(n)
if #seqs == 0 then
  return { {}, {} }
end
local archived = messages_of(seqs)
in_chunks('ZREM', active_key, seqs)
add_seqs(archived_key, seqs)
return commit(SCRIPT, { seqs, archived }, rcall('HLEN', messages_key))
