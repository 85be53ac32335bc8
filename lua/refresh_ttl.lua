#!lua flags=allow-oom
--[[
  refresh_ttl: restart the conversation's TTL (and its record's) without changing it.

  KEYS[1], KEYS[2], ARGV[1..7]  as every script (includes/prelude.lua); ARGV[1] is '' (a
                                refresh is not recorded: doing it twice is doing it once), and
                                ARGV[2] > 0

  Returns    1 when the conversation exists, 0 when it does not (nothing changes then)
  Errors     those of the prelude; nothing changes
  Flags      allow-oom: it uses no memory, and a server at maxmemory still keeps expiries fresh
  Cost       O(1)
]]
-- @include prelude
if ttl == '0' then
  fail('BADARG', 'ttl 0')
end
if not check_type('list') then
  return 0
end
check_allowed({ { 'pexpire', list_key, ttl }, { 'pexpire', record_key, ttl } })
rcall('PEXPIRE', list_key, ttl)
rcall('PEXPIRE', record_key, ttl)
return 1
