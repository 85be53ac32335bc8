#!lua flags=no-writes
--[[
  read: a range of the conversation and its version, read together.

  KEYS[1], KEYS[2], ARGV[1..7]  as every script (includes/prelude.lua); ARGV[1] is '' (a read
                                records nothing)
  ARGV[8]    the first index, ARGV[9] the last (LRANGE's rules: inclusive, negative from the end)

  Returns    {version, elements}: the version as text ('0': no conversation; '1': one no script
             of this store has written), then the elements from ARGV[8] to ARGV[9], in order
  Errors     ACS_WRONGTYPE (KEYS[1] holds another type), ACS_BADARG
  Flags      no-writes: it runs on replicas and when the server is out of memory
  Cost       O(S + M): LRANGE walks S elements from the nearer end to the range, returns M
]]
-- @include prelude
local first = integer_arg('first', ARGV[FIRST_ARG])
local last = integer_arg('last', ARGV[FIRST_ARG + 1])
local exists = check_type('list')
return { read_version(exists), rcall('LRANGE', list_key, first, last) }
