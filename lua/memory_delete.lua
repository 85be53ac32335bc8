#!lua flags=allow-oom
--[[
  memory_delete: remove every message of one status, or the whole conversation.

  KEYS[1], KEYS[2], ARGV[1..7]  as every script (includes/prelude.lua)
  KEYS[3], KEYS[4]              the ACTIVE and ARCHIVED sets (includes/memory.lua)
  ARGV[8]    'active' or 'archived'; '' for both (the whole conversation)

  Returns    how many messages it removed; 0 changes nothing
  Errors     those of the prelude; nothing changes
  Flags      allow-oom: a delete frees memory, so it runs when the server is out of it
  Cost       O(N) for the N messages removed
]]
-- @include prelude
-- @include memory
local SCRIPT = 'memory_delete'

local status = ARGV[FIRST_ARG]
local set = status ~= '' and status_key(status) or nil
local replayed, reply = begin(SCRIPT, 'hash', memory_commands())
if replayed then
  return reply
end

local removed
if set == nil then
  removed = rcall('HLEN', messages_key)
  if removed == 0 then
    return 0
  end
  rcall('DEL', messages_key, active_key, archived_key)
else
  local seqs = rcall('ZRANGE', set, 0, -1)
  removed = #seqs
  if removed == 0 then
    return 0
  end
  remove_seqs(set, seqs)
end
return commit(SCRIPT, removed, rcall('HLEN', messages_key))
