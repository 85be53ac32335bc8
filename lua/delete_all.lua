#!lua
--[[
  delete_all: remove the whole conversation and return what it held.

  KEYS[1]    the conversation: a list, one JSON message per element

  Returns    every element it held, in order (empty when the key did not exist)
  Errors     ACS_WRONGTYPE <type>  KEYS[1] holds something other than a list; nothing changes
  Cost       O(N): every element is read once and freed
]]
local rcall = redis.call
local key = KEYS[1]

local kind = rcall('TYPE', key)['ok']
if kind ~= 'list' and kind ~= 'none' then
  return redis.error_reply('ACS_WRONGTYPE ' .. kind)
end

local removed = rcall('LRANGE', key, 0, -1)
rcall('DEL', key)
return removed
