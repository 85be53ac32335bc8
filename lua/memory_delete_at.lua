#!lua flags=allow-oom
--[[
  memory_delete_at: remove the message at a position of the whole conversation, both statuses
  in insertion order (LlamaIndex's get_messages(key, status=None)), and return it.

  KEYS[1], KEYS[2], ARGV[1..7]  as every script (includes/prelude.lua)
  KEYS[3], KEYS[4]              the ACTIVE and ARCHIVED sets (includes/memory.lua)
  ARGV[8]    the position; only 0 <= position < length removes anything

  Returns    {seq, JSON text} of the message removed, or nil when the position is out of range
             (nothing changes then)
  Errors     those of the prelude; nothing changes
  Flags      allow-oom: a delete frees memory, so it runs when the server is out of it
  Cost       O(log N + min(i, N-i)): both sets are merged from the nearer end up to position i
]]
-- @include prelude
-- @include memory
local SCRIPT = 'memory_delete_at'

local index = integer_arg('index', ARGV[FIRST_ARG])
local replayed, reply = begin(SCRIPT, 'hash', memory_commands())
if replayed then
  return reply
end

local length = rcall('HLEN', messages_key)
local seq = merged_seq_at(index, length)
if seq == nil then
  return false
end
local message = rcall('HGET', messages_key, seq)
local set = rcall('ZSCORE', active_key, seq) and active_key or archived_key
remove_seqs(set, { seq })
return commit(SCRIPT, { seq, message }, length - 1)
