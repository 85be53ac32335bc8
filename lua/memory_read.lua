#!lua flags=no-writes
--[[
  memory_read: messages of one status, or of both in insertion order, from an offset.

  KEYS[1], KEYS[2], ARGV[1..7]  as every script (includes/prelude.lua); ARGV[1] is '' (a read
                                records nothing)
  KEYS[3], KEYS[4]              the ACTIVE and ARCHIVED sets (includes/memory.lua)
  ARGV[8]    'active' or 'archived'; '' for both, interleaved in insertion order
  ARGV[9]    the offset, >= 0: how many of those to skip
  ARGV[10]    the limit, >= 0: how many at most; '' for no limit

  Returns    {seqs, JSON texts}, oldest first; empty ones for a missing conversation
  Errors     ACS_WRONGTYPE (KEYS[1] holds another type), ACS_BADARG
  Flags      no-writes: it runs on replicas and when the server is out of memory
  Cost       one status: O(log N + M) (ZRANGE by rank, then HMGET of the M); both:
             O(log N + offset + M), a two-way merge of the sets' heads
]]
-- @include prelude
-- @include memory
local status = ARGV[FIRST_ARG]
local offset = integer_arg('offset', ARGV[FIRST_ARG + 1], 0)
local limit = nil
if ARGV[FIRST_ARG + 2] ~= '' then
  limit = integer_arg('limit', ARGV[FIRST_ARG + 2], 0)
end
local set = status ~= '' and status_key(status) or nil
check_type('hash')

local seqs
if limit == 0 then
  seqs = {}
elseif set == nil then
  seqs = merged_range(offset, limit)
else
  seqs = rcall('ZRANGE', set, text(offset), limit and text(offset + limit - 1) or '-1')
end
return { seqs, messages_of(seqs) }
