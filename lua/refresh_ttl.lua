#!lua
--[[
  refresh_ttl: restart the conversation's TTL (and its record's) without changing it.

  KEYS[1], KEYS[2], ARGV[1..6]  as every script (includes/prelude.lua); ARGV[1] is '' (a
                                refresh is not recorded: doing it twice is doing it once), and
                                ARGV[2] > 0

  Returns    1 when the conversation exists, 0 when it does not (nothing changes then)
  Errors     those of the prelude; nothing changes
  Cost       O(1)
]]
-- @include prelude
local found = rcall('TYPE', list_key)['ok']
if found ~= 'list' and found ~= 'none' then
  fail('WRONGTYPE', found)
end
if ttl == '0' then
  fail('BADARG', 'ttl 0')
end
if found == 'none' then
  return 0
end
for _, command in ipairs({ { 'pexpire', list_key, ttl }, { 'pexpire', record_key, ttl } }) do
  if not redis.acl_check_cmd(unpack(command)) then
    fail('NOPERM', command[1])
  end
end
rcall('PEXPIRE', list_key, ttl)
rcall('PEXPIRE', record_key, ttl)
return 1
