#!lua flags=no-writes
--[[
  version: the conversation's version, without its messages.

  KEYS[1], KEYS[2], ARGV[1..7]  as every script (includes/prelude.lua); ARGV[1] is ''

  Returns    the version as text: '0' when there is no conversation, '1' for one no script of
             this store has written (the seed's data, or a record lost), else the version its
             last write gave it (from the server clock, in µs: it only grows)
  Errors     ACS_WRONGTYPE (KEYS[1] holds another type), ACS_BADARG
  Flags      no-writes: it runs on replicas and when the server is out of memory
  Cost       O(1)
]]
-- @include prelude
return read_version(check_type('list'))
