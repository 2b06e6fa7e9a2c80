#!lua name=voltage
--[[
voltage — Redis Function library of the voltage-gateway (VoltageEMS).

Wire contract: PROTOCOL.md §1 (data model) and §2 (functions).
Documentation of every function: lua/README.md (next to this file).

Load by hand:  redis-cli -x FUNCTION LOAD REPLACE < lua/voltage.lua
The gateway loads it itself at start-up (unless --no-load-functions) and again
whenever it (re)connects to a Redis whose `voltage_version` is missing or older.

Functions (the Rust side depends on these exact signatures):
  FCALL_RO voltage_version 0
  FCALL    comsrv_write_data 1 comsrv:{ch}:{T|S|C|A} <values_json> [<unix_ts>]
  FCALL    netsrv_collect_data 3 netsrv:seq netsrv:dirty netsrv:epoch <cursor> <epoch> <limit> [<wake>]

  FCALL    alarmsrv_rule_save|alarmsrv_rule_delete 1 alarm:rule:{id} [...], alarmsrv_check 1 comsrv:{ch}:{t} [pid...]
  FCALL    modsrv_model_save|modsrv_model_delete|modsrv_calculate 1 model:{id} [...]
  FCALL    rulesrv_rule_save|rulesrv_rule_delete|rulesrv_evaluate 1 rule:{id} [...]
  FCALL    netsrv_forward_save|netsrv_forward_delete|netsrv_forward_data 1 forward:{name} [...]
  FCALL    control_submit 1 comsrv:{ch}:{C|A}:TODO <json>, control_report 1 cmd:{id} <json>,
           control_expire 1 cmd:pending:{instance} [<limit>]
  FCALL    control_expire_all 0 [<limit>], control_acks_take|_return 1..2 ctl:acks:{client_id} [...]
  FCALL    netsrv_client_claim|_release|_renew 1..N gw:client:{client_id} [...]
  FCALL    auth_login|auth_refresh|auth_logout 1 auth:login:{family} [...]

Key exception (documented for a future cluster layout): comsrv_write_data
derives the site-wide keys netsrv:seq, netsrv:dirty and netsrv:epoch itself,
and the alarm:*, model:*, rule:*, forward:* and cmd:* keys of what a write feeds;
a cluster layout must co-locate them with every comsrv:* hash (hash tags).
]]

-- Library version, returned by voltage_version. The gateway reloads the library
-- when Redis reports a smaller number than the one compiled into it.
-- BUMP THIS ON ANY CHANGE TO THIS FILE (and the matching constant on the Rust side).
local LIBRARY_VERSION = 30

-- Site-wide keys (see the cluster note above).
local SEQ_KEY = 'netsrv:seq'
local DIRTY_KEY = 'netsrv:dirty'
local EPOCH_KEY = 'netsrv:epoch'

local MAX_U32 = 4294967295
-- How far ahead of Redis's clock a device's timestamp may be (clock skew), in seconds.
local MAX_TS_AHEAD = 86400
local MAX_SAFE_INT = 9007199254740991 -- 2^53 - 1: largest integer a Lua double holds exactly
-- Field/value pairs per HSET call: Lua's unpack() fails beyond ~8000 values,
-- so big writes are split into several HSETs (still atomic: one function call).
local HSET_CHUNK = 500

-- Point ids already validated. A device writes the same ids on every poll, so one table
-- lookup replaces the pattern checks (comsrv_write_data: 35 -> 28 us for 20 points).
-- Library-local state lives as long as the loaded library; cleared when full so hostile
-- input cannot grow it without bound. Only valid ids are ever stored.
local valid_pids, valid_pid_count = {}, 0
local VALID_PID_CACHE_MAX = 65536

-- Wake-up hint. A collect that leaves a gateway caught up with <wake> = "1" arms it; the next
-- data write then PUBLISHes once on WAKE_CHANNEL, so a gateway subscribed there collects at
-- once instead of at its next polling tick. Library-local, not a key: it is only a latency
-- hint (nothing to replicate or persist); losing it (a reload, a failover) just means that
-- write waits for the gateway's tick. At most one message per arming, so a busy site does
-- not flood the channel.
local WAKE_CHANNEL = 'netsrv:wake'
local wake_armed = false

local function err(msg)
  return redis.error_reply('ERR ' .. msg)
end

-- Quote user input for error messages, truncated so a huge payload cannot
-- blow up the reply.
local function show(s)
  s = tostring(s)
  if #s > 64 then s = string.sub(s, 1, 64) .. '...' end
  return string.format('%q', s)
end

-- Parse an unsigned decimal id: digits only, no sign, no leading zero,
-- value in 1..max (0..max when allow_zero). Returns the number or nil.
local function parse_id(s, allow_zero, max)
  if type(s) ~= 'string' or not string.match(s, '^%d+$') then return nil end
  if #s > 1 and string.sub(s, 1, 1) == '0' then return nil end
  if #s > 10 then return nil end
  local n = tonumber(s)
  if n == nil or n > max then return nil end
  if n == 0 and not allow_zero then return nil end
  return n
end

local function is_finite(v)
  return v == v and v ~= math.huge and v ~= -math.huge
end

-- A double as the shortest decimal string that round-trips (at most 17
-- significant digits). Never tostring(): Lua 5.1 keeps only 14 digits.
-- -0 is written as "0".
local function format_number(v)
  if v == 0 then return '0' end
  -- Integers (most status values): %d is a quarter of the cost of a floating-point printf.
  if v % 1 == 0 and v > -1e15 and v < 1e15 then return string.format('%d', v) end
  local s = string.format('%.15g', v)
  if tonumber(s) == v then return s end
  s = string.format('%.16g', v)
  if tonumber(s) == v then return s end
  return string.format('%.17g', v)
end

-- An integral double (|v| <= 2^53) as a plain integer string, no exponent.
local function format_int(v)
  return string.format('%.0f', v)
end

-- Parse an argument that must be a non-negative integer (decimal string).
-- Returns the number or nil.
local function parse_uint(s)
  if type(s) ~= 'string' or not string.match(s, '^%d+$') then return nil end
  local n = tonumber(s)
  if n == nil or n > MAX_SAFE_INT then return nil end
  return n
end

-- Fresh epoch id: "{unix_s}-{usec}-{8 hex}". The hex part mixes the server's
-- run_id (random per redis-server process), the clock and math.random, so two
-- resets (FLUSHALL, restart, failover to another server) give different ids.
local function new_epoch()
  local t = redis.call('TIME')
  local run_id = ''
  local ok, info = pcall(redis.call, 'INFO', 'server')
  if ok and type(info) == 'string' then
    run_id = string.match(info, 'run_id:(%x+)') or ''
  end
  local salt = redis.sha1hex(run_id .. ':' .. t[1] .. ':' .. t[2] .. ':' ..
    tostring(math.random(1, 2147483647)) .. ':' .. tostring(math.random(1, 2147483647)))
  return t[1] .. '-' .. t[2] .. '-' .. string.sub(salt, 1, 8)
end

local function rotate_epoch()
  local epoch = new_epoch()
  redis.call('SET', EPOCH_KEY, epoch)
  return epoch
end

local function ensure_epoch()
  local epoch = redis.call('GET', EPOCH_KEY)
  if not epoch then
    epoch = new_epoch()
    redis.call('SET', EPOCH_KEY, epoch)
  end
  return epoch
end

-- ===================================================================
-- WHAT A WRITE FEEDS. lib:hooks (site-wide, a documented exception) says, per written hash,
-- which indexes hold its points — field "{ch}:{type}" -> letters A (alarm rules), M (models),
-- R (automation rules) — and field "*" = "F" while any forwarding destination is enabled: one
-- HMGET tells a write which hooks to run. Kept by the functions that change the indexes;
-- voltage_rebuild_hooks rebuilds it (the gateway calls it after loading a new library).
-- ===================================================================
local HOOKS = 'lib:hooks'

local function refresh_hooks(m)
  local mask = ''
  if redis.call('EXISTS', 'alarm:index:' .. m) == 1 then mask = mask .. 'A' end
  if redis.call('EXISTS', 'model:index:' .. m) == 1 then mask = mask .. 'M' end
  if redis.call('EXISTS', 'rule:index:' .. m) == 1 then mask = mask .. 'R' end
  if mask == '' then redis.call('HDEL', HOOKS, m) else redis.call('HSET', HOOKS, m, mask) end
end

local function refresh_forward_hook()
  if redis.call('EXISTS', 'forward:destinations') == 1 then
    redis.call('HSET', HOOKS, '*', 'F')
  else
    redis.call('HDEL', HOOKS, '*')
  end
end

-- ===================================================================
-- ALARMS (PROTOCOL.md §1: alarm:rule:{id}, alarm:events). Site-wide keys, a documented
-- cluster exception like netsrv:* (lua/README.md):
--   alarm:rule:{id}              hash: the rule as saved (alarmsrv_rule_save)
--   alarm:index:{ch}:{type}      hash: point id -> the enabled rules of that point, one per
--                                line "id op threshold deadband active(0|1)": all a write needs
--                                to evaluate them (one HMGET), so a write costs O(rules of the
--                                written points), never a scan
--   alarm:active                 hash: rule id -> the active alarm (JSON)
--   alarm:seq                    string: ALM_{n} counter
--   alarm:events                 stream: trigger (status 1) / recover (status 0) events
-- ===================================================================
local ALARM_ACTIVE = 'alarm:active'
local ALARM_SEQ = 'alarm:seq'
local ALARM_EVENTS = 'alarm:events'
-- Every alarm rule's id (the configuration routes list them).
local ALARM_RULES = 'alarm:rules'
-- Approximate cap of alarm:events (XADD MAXLEN ~): a reconnecting client older than this is
-- told it missed events and gets the active alarms instead.
local ALARM_EVENTS_MAX = 100000
local ALARM_MESSAGE_MAX = 256
local OPERATORS = { ['>'] = true, ['>='] = true, ['<'] = true, ['<='] = true, ['=='] = true, ['!='] = true }

local function alarm_index_key(ch_s, dtype)
  return 'alarm:index:' .. ch_s .. ':' .. dtype
end

-- Redis's clock in unix milliseconds, as an integer string.
local function now_ms()
  local t = redis.call('TIME')
  return format_int(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end

-- The active alarm as stored in alarm:active: JSON written by hand, because cjson.encode
-- keeps 14 significant digits of a number. `value` and `threshold` are format_number
-- strings, the ids integer strings.
local function active_json(a)
  return '{"alarm_id":' .. cjson.encode(a.alarm_id) .. ',"rule_id":' .. cjson.encode(a.rule_id) ..
    ',"channel_id":' .. a.channel_id .. ',"data_type":"' .. a.data_type ..
    '","point_id":' .. a.point_id .. ',"level":' .. a.level .. ',"value":' .. a.value ..
    ',"message":' .. cjson.encode(a.message) .. ',"operator":"' .. a.operator ..
    '","threshold":' .. a.threshold .. ',"triggered_at":' .. a.time ..
    ',"event_id":"' .. a.event_id .. '"}'
end

-- Is the alarm condition met?
local function breaches(v, op, thr)
  if op == '>' then return v > thr
  elseif op == '>=' then return v >= thr
  elseif op == '<' then return v < thr
  elseif op == '<=' then return v <= thr
  elseif op == '==' then return v == thr
  else return v ~= thr end
end

-- Does an active alarm still hold? The deadband moves the threshold toward the normal side,
-- so a value hovering at the threshold does not trigger and recover on every write.
local function still_breaches(v, op, thr, db)
  if op == '>' or op == '>=' then return breaches(v, op, thr - db)
  elseif op == '<' or op == '<=' then return breaches(v, op, thr + db)
  else return breaches(v, op, thr) end
end

-- Appends one event; returns its stream id.
local function append_event(f)
  if f.acknowledged_by then
    return redis.call('XADD', ALARM_EVENTS, 'MAXLEN', '~', ALARM_EVENTS_MAX, '*',
      'alarm_id', f.alarm_id, 'rule_id', f.rule_id, 'channel_id', f.channel_id,
      'data_type', f.data_type, 'point_id', f.point_id, 'status', f.status,
      'level', f.level, 'value', f.value, 'message', f.message,
      'operator', f.operator, 'threshold', f.threshold, 'time', f.time,
      'acknowledged_by', f.acknowledged_by, 'acknowledged_at', f.acknowledged_at)
  end
  return redis.call('XADD', ALARM_EVENTS, 'MAXLEN', '~', ALARM_EVENTS_MAX, '*',
    'alarm_id', f.alarm_id, 'rule_id', f.rule_id, 'channel_id', f.channel_id,
    'data_type', f.data_type, 'point_id', f.point_id, 'status', f.status,
    'level', f.level, 'value', f.value, 'message', f.message,
    'operator', f.operator, 'threshold', f.threshold, 'time', f.time)
end

-- A rule's definition and state as an index line.
local function index_line(id, op, thr, db, active)
  return id .. ' ' .. op .. ' ' .. format_number(thr) .. ' ' .. format_number(db) .. ' ' ..
    (active and '1' or '0')
end

-- Index values parsed, by their text: a device writes the same points on every poll, so one
-- table lookup replaces the pattern matching. Keyed by content, so it is never stale;
-- cleared when full so hostile rule sets cannot grow it without bound.
local parsed_defs, parsed_count = {}, 0
local PARSED_DEFS_MAX = 4096

local function parse_defs(d)
  local p = parsed_defs[d]
  if p then return p end
  p = {}
  for line in string.gmatch(d, '[^\n]+') do
    local id, op, thr, db, st = string.match(line, '^(%S+) (%S+) (%S+) (%S+) ([01])$')
    if id then
      p[#p + 1] = { id = id, op = op, thr = tonumber(thr), db = tonumber(db), active = st == '1' }
    end
  end
  if parsed_count >= PARSED_DEFS_MAX then parsed_defs, parsed_count = {}, 0 end
  parsed_defs[d] = p
  parsed_count = parsed_count + 1
  return p
end

-- Marks rule `id`'s line of (ch, dtype, pid) active or not (on a state change: rare).
local function set_line_state(id, ch_s, dtype, pid, active)
  local idx = 'alarm:index:' .. ch_s .. ':' .. dtype
  local d = redis.call('HGET', idx, pid)
  if not d then return end
  local lines = {}
  for line in string.gmatch(d, '[^\n]+') do
    if string.match(line, '^(%S+)') == id then
      line = string.sub(line, 1, -2) .. (active and '1' or '0')
    end
    lines[#lines + 1] = line
  end
  redis.call('HSET', idx, pid, table.concat(lines, '\n'))
end

-- Trigger: a fresh ALM_{n}, one event, the alarm becomes active.
local function trigger(rule_id, ch_s, dtype, pid, v, op, thr)
  local rule = redis.call('HMGET', 'alarm:rule:' .. rule_id, 'level', 'message')
  local alarm_id = 'ALM_' .. redis.call('INCR', ALARM_SEQ)
  local f = {
    alarm_id = alarm_id, rule_id = rule_id, channel_id = ch_s, data_type = dtype,
    point_id = pid, status = '1', level = rule[1] or '0', value = format_number(v),
    message = rule[2] or '', operator = op, threshold = format_number(thr), time = now_ms(),
  }
  f.event_id = append_event(f)
  redis.call('HSET', ALARM_ACTIVE, rule_id, active_json(f))
end

-- Recover: one event with the active alarm's id, the alarm is no longer active. `value` may
-- be nil (the rule was deleted or moved and its point has no numeric value).
local function recover(rule_id, active_json, value)
  local a = cjson.decode(active_json)
  append_event({
    alarm_id = a.alarm_id, rule_id = rule_id, channel_id = format_int(a.channel_id),
    data_type = a.data_type, point_id = format_int(a.point_id), status = '0',
    level = format_int(a.level), value = value and format_number(value) or '',
    message = a.message, operator = a.operator, threshold = format_number(a.threshold),
    time = now_ms(),
  })
  redis.call('HDEL', ALARM_ACTIVE, rule_id)
end

-- Evaluates the rules of `pids` (point id strings) of (ch, dtype) against `values` (point id
-- -> stored string). Points without a numeric value are skipped. Returns the events appended.
local function check_alarms(ch_s, dtype, pids, values)
  local idx = alarm_index_key(ch_s, dtype)
  local events = 0
  for i = 1, #pids, HSET_CHUNK do
    local chunk_end = math.min(i + HSET_CHUNK - 1, #pids)
    local defs = redis.call('HMGET', idx, unpack(pids, i, chunk_end))
    for j = 1, #defs do
      local d = defs[j]
      if d then
        local pid = pids[i + j - 1]
        local v = tonumber(values[pid])
        if v and is_finite(v) then
          for _, c in ipairs(parse_defs(d)) do
            if not c.active then
              if breaches(v, c.op, c.thr) then
                trigger(c.id, ch_s, dtype, pid, v, c.op, c.thr)
                set_line_state(c.id, ch_s, dtype, pid, true)
                events = events + 1
              end
            elseif not still_breaches(v, c.op, c.thr, c.db) then
              local active = redis.call('HGET', ALARM_ACTIVE, c.id)
              if active then recover(c.id, active, v) end
              set_line_state(c.id, ch_s, dtype, pid, false)
              events = events + 1
            end
          end
        end
      end
    end
  end
  return events
end

-- Removes rule `id` from the index line set of (ch, dtype, pid).
local function unindex(id, ch_s, dtype, pid)
  local idx = alarm_index_key(ch_s, dtype)
  local d = redis.call('HGET', idx, pid)
  if not d then return end
  local keep = {}
  for line in string.gmatch(d, '[^\n]+') do
    if string.match(line, '^(%S+)') ~= id then keep[#keep + 1] = line end
  end
  if #keep == 0 then
    redis.call('HDEL', idx, pid)
  else
    redis.call('HSET', idx, pid, table.concat(keep, '\n'))
  end
  refresh_hooks(ch_s .. ':' .. dtype)
end

local function rule_id_of(key, fname)
  local id = string.match(key, '^alarm:rule:([%w_%.%-]+)$')
  if not id or #id > 64 then
    return nil, err('invalid key ' .. show(key) .. ': expected alarm:rule:{id}, id 1-64 of A-Za-z0-9_.- (' .. fname .. ')')
  end
  return id
end

-- Ends rule `id`'s active alarm (if any) with a recovery event valued at its point's
-- current value.
local function end_active(id, ch_s, dtype, pid)
  local active = redis.call('HGET', ALARM_ACTIVE, id)
  if active then
    local v = tonumber(redis.call('HGET', 'comsrv:' .. ch_s .. ':' .. dtype, pid) or '')
    recover(id, active, v and is_finite(v) and v or nil)
    return 1
  end
  return 0
end

-- -------------------------------------------------------------------
-- alarmsrv_rule_save:
--   FCALL alarmsrv_rule_save 1 alarm:rule:{id} <rule_json>  ->  events appended (integer)
-- -------------------------------------------------------------------
local function alarmsrv_rule_save(keys, args)
  if #keys ~= 1 or #args ~= 1 then
    return err('alarmsrv_rule_save expects 1 key (alarm:rule:{id}) and 1 argument (rule_json)')
  end
  local id, e = rule_id_of(keys[1], 'alarmsrv_rule_save')
  if not id then return e end
  local ok, r = pcall(cjson.decode, args[1])
  if not ok or type(r) ~= 'table' then
    return err('invalid rule_json: expected a JSON object')
  end
  local function bad(field, want)
    return err('invalid rule field ' .. field .. ': expected ' .. want .. ' (nothing saved)')
  end
  local function uint(v, max)
    return type(v) == 'number' and v % 1 == 0 and v >= 0 and v <= max
  end
  if not uint(r.channel_id, MAX_U32) or r.channel_id < 1 then return bad('channel_id', 'an integer 1..4294967295') end
  if type(r.data_type) ~= 'string' or not string.match(r.data_type, '^[TSCA]$') then return bad('data_type', 'one of T S C A') end
  if not uint(r.point_id, MAX_U32) then return bad('point_id', 'an integer 0..4294967295') end
  if type(r.operator) ~= 'string' or not OPERATORS[r.operator] then return bad('operator', 'one of > >= < <= == !=') end
  if type(r.threshold) ~= 'number' or not is_finite(r.threshold) then return bad('threshold', 'a finite number') end
  if r.level == nil then r.level = 0 end
  if not uint(r.level, 3) then return bad('level', 'an integer 0..3') end
  if r.message == nil then r.message = '' end
  if type(r.message) ~= 'string' or #r.message > ALARM_MESSAGE_MAX then return bad('message', 'a string of at most ' .. ALARM_MESSAGE_MAX .. ' bytes') end
  if r.enabled == nil then r.enabled = true end
  if type(r.enabled) ~= 'boolean' then return bad('enabled', 'true or false') end
  if r.deadband == nil then r.deadband = 0 end
  if type(r.deadband) ~= 'number' or not is_finite(r.deadband) or r.deadband < 0 then return bad('deadband', 'a finite number >= 0') end
  local key = keys[1]
  local ktype = redis.call('TYPE', key)['ok']
  if ktype ~= 'hash' and ktype ~= 'none' then
    return err('WRONGTYPE ' .. key .. ' is not a hash (nothing saved)')
  end

  local ch_s, pid = format_int(r.channel_id), format_int(r.point_id)
  local events = 0
  local old = redis.call('HMGET', key, 'channel_id', 'data_type', 'point_id')
  if old[1] then
    unindex(id, old[1], old[2], old[3])
    -- An active alarm on another point, or of a disabled rule, is over.
    if old[1] ~= ch_s or old[2] ~= r.data_type or old[3] ~= pid or not r.enabled then
      events = events + end_active(id, old[1], old[2], old[3])
    end
  end
  redis.call('DEL', key)
  redis.call('SADD', ALARM_RULES, id)
  redis.call('HSET', key, 'id', id, 'channel_id', ch_s, 'data_type', r.data_type,
    'point_id', pid, 'operator', r.operator, 'threshold', format_number(r.threshold),
    'level', format_int(r.level), 'message', r.message, 'enabled', r.enabled and '1' or '0',
    'deadband', format_number(r.deadband))
  if r.enabled then
    local idx = alarm_index_key(ch_s, r.data_type)
    -- An alarm that stayed active (same point, still enabled) keeps its state.
    local still_active = redis.call('HEXISTS', ALARM_ACTIVE, id) == 1
    local line = index_line(id, r.operator, r.threshold, r.deadband, still_active)
    local d = redis.call('HGET', idx, pid)
    redis.call('HSET', idx, pid, d and (d .. '\n' .. line) or line)
    refresh_hooks(ch_s .. ':' .. r.data_type)
    -- Evaluate against the current value: a rule created while its point is already past
    -- the threshold triggers now, not at the next write.
    local v = redis.call('HGET', 'comsrv:' .. ch_s .. ':' .. r.data_type, pid)
    if v then
      events = events + check_alarms(ch_s, r.data_type, { pid }, { [pid] = v })
    end
  end
  return events
end

-- -------------------------------------------------------------------
-- alarmsrv_rule_delete:
--   FCALL alarmsrv_rule_delete 1 alarm:rule:{id}  ->  1 deleted, 0 no such rule
-- -------------------------------------------------------------------
local function alarmsrv_rule_delete(keys, args)
  if #keys ~= 1 or #args ~= 0 then
    return err('alarmsrv_rule_delete expects 1 key (alarm:rule:{id}) and no arguments')
  end
  local id, e = rule_id_of(keys[1], 'alarmsrv_rule_delete')
  if not id then return e end
  local old = redis.call('HMGET', keys[1], 'channel_id', 'data_type', 'point_id')
  if not old[1] then return 0 end
  unindex(id, old[1], old[2], old[3])
  end_active(id, old[1], old[2], old[3])
  redis.call('DEL', keys[1])
  redis.call('SREM', ALARM_RULES, id)
  return 1
end

-- -------------------------------------------------------------------
-- alarmsrv_ack:
--   FCALL alarmsrv_ack 1 alarm:active <alarm_id> <user>  ->  {acknowledged_by, acknowledged_at, new (0|1)}
--   Acknowledges the active alarm ALM_{n}: recorded on its alarm:active entry and appended to
--   alarm:events as status "ack" (the trigger's fields plus acknowledged_by/_at), once — a
--   second acknowledgement returns the first (new = 0) and appends nothing.
-- -------------------------------------------------------------------
local function alarmsrv_ack(keys, args)
  if #keys ~= 1 or keys[1] ~= ALARM_ACTIVE or #args ~= 2 then
    return err('alarmsrv_ack expects 1 key (alarm:active) and 2 arguments (alarm_id, user)')
  end
  local alarm_id, user = args[1], args[2]
  if not string.match(alarm_id, '^ALM_%d+$') or #alarm_id > 24 then
    return err('INVALID_PARAMETER alarm_id: expected ALM_{n}')
  end
  if #user < 1 or #user > 64 then
    return err('INVALID_PARAMETER user: expected a string of 1-64 bytes')
  end
  local all = redis.call('HGETALL', ALARM_ACTIVE)
  for i = 1, #all, 2 do
    local ok, a = pcall(cjson.decode, all[i + 1])
    if ok and type(a) == 'table' and a.alarm_id == alarm_id then
      if a.acknowledged_by then
        return { a.acknowledged_by, format_int(a.acknowledged_at), 0 }
      end
      local now = now_ms()
      -- The stored JSON keeps the library's own number spelling: extend it, never re-encode.
      local stored = all[i + 1]
      redis.call('HSET', ALARM_ACTIVE, all[i], string.sub(stored, 1, -2) ..
        ',"acknowledged_by":' .. cjson.encode(user) .. ',"acknowledged_at":' .. now .. '}')
      append_event({
        alarm_id = alarm_id, rule_id = all[i], channel_id = format_int(a.channel_id),
        data_type = a.data_type, point_id = format_int(a.point_id), status = 'ack',
        level = format_int(a.level), value = format_number(a.value), message = a.message,
        operator = a.operator, threshold = format_number(a.threshold), time = now,
        acknowledged_by = user, acknowledged_at = now,
      })
      return { user, now, 1 }
    end
  end
  return err('ALARM_NOT_FOUND no active alarm ' .. alarm_id .. ' (recovered, or never raised)')
end

-- -------------------------------------------------------------------
-- alarmsrv_check:
--   FCALL alarmsrv_check 1 comsrv:{ch}:{type} [<point_id> ...]  ->  events appended
--   Evaluates the rules of the given points (every point with a rule when none is given)
--   against their stored values.
-- -------------------------------------------------------------------
local function alarmsrv_check(keys, args)
  if #keys ~= 1 then
    return err('alarmsrv_check expects 1 key (comsrv:{ch}:{T|S|C|A})')
  end
  local ch_s, dtype = string.match(keys[1], '^comsrv:(%d+):([TSCA])$')
  if not (ch_s and parse_id(ch_s, false, MAX_U32)) then
    return err('invalid key ' .. show(keys[1]) .. ': expected comsrv:{ch}:{T|S|C|A}')
  end
  local pids = {}
  if #args == 0 then
    pids = redis.call('HKEYS', alarm_index_key(ch_s, dtype))
  else
    for _, a in ipairs(args) do
      if not parse_id(a, true, MAX_U32) then
        return err('invalid point id ' .. show(a) .. ': expected an integer 0..4294967295')
      end
      pids[#pids + 1] = a
    end
  end
  if #pids == 0 then return 0 end
  local values = {}
  for i = 1, #pids, HSET_CHUNK do
    local chunk_end = math.min(i + HSET_CHUNK - 1, #pids)
    local vs = redis.call('HMGET', keys[1], unpack(pids, i, chunk_end))
    for j = 1, #vs do
      if vs[j] then values[pids[i + j - 1]] = vs[j] end
    end
  end
  return check_alarms(ch_s, dtype, pids, values)
end

-- -------------------------------------------------------------------
-- voltage_rebuild_hooks: FCALL voltage_rebuild_hooks 0  ->  hashes with hooks
--   Rebuilds lib:hooks from the indexes (SCAN): after loading this library over an older one
--   (the gateway does it), or after editing indexes by hand.
-- -------------------------------------------------------------------
local function voltage_rebuild_hooks(keys, args)
  redis.call('DEL', HOOKS)
  -- The set of alarm rule ids (rules saved by a library before it existed are listed too).
  local cursor = '0'
  repeat
    local r = redis.call('SCAN', cursor, 'MATCH', 'alarm:rule:*', 'COUNT', 1000)
    cursor = r[1]
    for _, k in ipairs(r[2]) do
      local id = string.match(k, '^alarm:rule:([%w_%.%-]+)$')
      if id and redis.call('TYPE', k)['ok'] == 'hash' then redis.call('SADD', ALARM_RULES, id) end
    end
  until cursor == '0'
  local seen, n = {}, 0
  for _, pattern in ipairs({ 'alarm:index:*', 'model:index:*', 'rule:index:*' }) do
    local cursor = '0'
    repeat
      local r = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = r[1]
      for _, k in ipairs(r[2]) do
        local m = string.match(k, ':index:(%d+:[TSCA])$')
        if m and not seen[m] then
          seen[m] = true
          n = n + 1
          refresh_hooks(m)
        end
      end
    until cursor == '0'
  end
  refresh_forward_hook()
  return n
end

-- -------------------------------------------------------------------
-- voltage_version: FCALL_RO voltage_version 0  ->  integer
-- -------------------------------------------------------------------
local function voltage_version(keys, args)
  return LIBRARY_VERSION
end

-- The bookkeeping of a change to comsrv:{ch_s}:{dtype}: the next seq (repairing a lost
-- netsrv:seq), the hash's dirty entry, the epoch.
local function record_write(ch_s, dtype, nested)
  local seq = redis.call('INCR', SEQ_KEY)
  if seq == 1 then
    -- First write ever, or netsrv:seq was lost (deleted/evicted) while
    -- netsrv:dirty survived: continue above the highest recorded seq and
    -- rotate the epoch so every consumer resyncs.
    local top = redis.call('ZREVRANGE', DIRTY_KEY, 0, 0, 'WITHSCORES')
    if top[2] then
      seq = math.floor(tonumber(top[2])) + 1
      redis.call('SET', SEQ_KEY, format_int(seq))
      rotate_epoch()
    end
  end
  redis.call('ZADD', DIRTY_KEY, seq, ch_s .. ':' .. dtype)
  -- A write nested in another (a model's output) follows one that ensured the epoch.
  if not nested then ensure_epoch() end
end

-- Models reading the written points (defined below; write_values and the models call each
-- other: a model's output is written like any point and may feed further models).
local run_models
-- Automation rules reading the written points (defined with the control functions they use).
local run_rules
-- Northbound forwarding of the written points (defined with netsrv_forward_data).
local run_forwarding

-- What written points feed — alarm rules, models, automation rules, forwarding — run after
-- the write: lib:hooks says which (one HMGET; nothing more when they feed nothing).
local function run_hooks(ch_s, dtype, pids, points, ts, depth)
  local m = ch_s .. ':' .. dtype
  local h = redis.call('HMGET', 'lib:hooks', m, '*')
  local mask, forward = h[1], h[2]
  if not mask and not forward then return end
  local written = { hash = m, points = points }
  if mask then
    if string.find(mask, 'A', 1, true) then check_alarms(ch_s, dtype, pids, points) end
    if string.find(mask, 'M', 1, true) then run_models(ch_s, dtype, pids, ts, depth, written) end
    if string.find(mask, 'R', 1, true) then run_rules(ch_s, dtype, pids, written) end
  end
  if forward then run_forwarding(ch_s, dtype, pids, points, ts) end
end

-- Validates `values` (a decoded JSON object point id -> value) and writes them to `key`
-- (comsrv:{ch_s}:{dtype}) stamped `ts`, with the bookkeeping and the alarm check: the write
-- path shared by comsrv_write_data and control_report. Returns the number of points written,
-- or an error reply (nothing written).
local function write_values(key, ch_s, dtype, values, ts, depth)
  -- validate everything before writing anything
  local fields = {}
  local points = {}
  local pids = {}
  local count = 0
  for pid, v in pairs(values) do
    if type(pid) ~= 'string' then
      return err('invalid values_json: expected a JSON object {"point_id": value, ...}, got an array')
    end
    if valid_pids[pid] then -- luacheck: ignore 542 (validated before)
    elseif parse_id(pid, true, MAX_U32) then
      if valid_pid_count >= VALID_PID_CACHE_MAX then
        valid_pids, valid_pid_count = {}, 0
      end
      valid_pids[pid] = true
      valid_pid_count = valid_pid_count + 1
    else
      return err('invalid point id ' .. show(pid) ..
        ': expected an integer 0..4294967295 without leading zeros (nothing written)')
    end
    local tv = type(v)
    local s
    if tv == 'number' then
      if not is_finite(v) then
        return err('invalid value for point ' .. pid .. ': not a finite number (nothing written)')
      end
      s = format_number(v)
    elseif tv == 'string' then
      -- A numeric string is sent to clients as a number: one that is not finite ("1e999")
      -- would make the whole message invalid JSON. (Words such as "inf" stay strings.)
      local n = tonumber(v)
      if n and not is_finite(n) and string.match(v, '^%s*[-+]?[%d.]') then
        return err('invalid value for point ' .. pid .. ': ' .. show(v) ..
          ' is not a finite number (nothing written)')
      end
      s = v
    elseif tv == 'boolean' then
      s = v and '1' or '0'
    elseif v == cjson.null then
      return err('invalid value for point ' .. pid .. ': null is not allowed (nothing written)')
    else
      return err('invalid value for point ' .. pid ..
        ': expected a number, string or boolean, got a nested object/array (nothing written)')
    end
    count = count + 1
    fields[#fields + 1] = pid
    fields[#fields + 1] = s
    points[pid] = s
    pids[count] = pid
  end

  if count == 0 then
    return 0 -- {} (or []): nothing to write, no seq bump
  end

  fields[#fields + 1] = '_timestamp'
  fields[#fields + 1] = format_int(ts)
  -- Redis's clock at the write, ms: every gateway recording history stamps the change with
  -- it, so N recorders write identical points (InfluxDB keeps one per series and time).
  fields[#fields + 1] = '_written_ms'
  fields[#fields + 1] = now_ms()

  -- Redis does not roll back a function that fails half way, and the only runtime errors
  -- left are keys of the wrong type: check the target first, then write the bookkeeping
  -- (INCR: a corrupt netsrv:seq writes nothing; ZADD / the epoch: a corrupt one leaves
  -- only a seq gap or a dirty entry for an unchanged hash), and the data last, so a write
  -- that fails has written no data and a write whose data is written is always collected.
  local ktype = redis.call('TYPE', key)['ok']
  if ktype ~= 'hash' and ktype ~= 'none' then
    return err('WRONGTYPE ' .. key .. ' holds a ' .. ktype .. ', not a hash (nothing written)')
  end
  record_write(ch_s, dtype)

  for i = 1, #fields, 2 * HSET_CHUNK do
    local last = math.min(i + 2 * HSET_CHUNK - 1, #fields)
    redis.call('HSET', key, unpack(fields, i, last))
  end

  run_hooks(ch_s, dtype, pids, points, ts, depth or 0)

  if wake_armed then
    wake_armed = false
    -- pcall: the data is already written; a caller whose ACL lacks the channel (Redis 7
    -- users start with resetchannels) must not see the write fail — the gateway's tick
    -- collects it anyway.
    redis.pcall('PUBLISH', WAKE_CHANNEL, ch_s .. ':' .. dtype)
  end

  return count
end

-- The write path for values the library computed (model outputs: finite numbers, point ids
-- from a validated definition): the same bookkeeping, hooks and wake-up as write_values.
local function write_computed(ch_s, dtype, values, ts, depth, nested)
  local key = 'comsrv:' .. ch_s .. ':' .. dtype
  local fields, points, pids = {}, {}, {}
  for pid, v in pairs(values) do
    local sv = format_number(v)
    fields[#fields + 1] = pid
    fields[#fields + 1] = sv
    points[pid] = sv
    pids[#pids + 1] = pid
  end
  fields[#fields + 1] = '_timestamp'
  fields[#fields + 1] = format_int(ts)
  fields[#fields + 1] = '_written_ms'
  fields[#fields + 1] = now_ms()
  record_write(ch_s, dtype, nested)
  redis.call('HSET', key, unpack(fields))
  run_hooks(ch_s, dtype, pids, points, ts, depth)
  if wake_armed then
    wake_armed = false
    redis.pcall('PUBLISH', WAKE_CHANNEL, ch_s .. ':' .. dtype)
  end
end

-- -------------------------------------------------------------------
-- comsrv_write_data:
--   FCALL comsrv_write_data 1 comsrv:{ch}:{T|S|C|A} <values_json> [<unix_ts>]
--   -> integer number of points written
-- -------------------------------------------------------------------
local function comsrv_write_data(keys, args)
  if #keys ~= 1 then
    return err('comsrv_write_data expects 1 key (comsrv:{ch}:{T|S|C|A}), got ' .. #keys)
  end
  if #args < 1 or #args > 2 then
    return err('comsrv_write_data expects <values_json> [<unix_ts>], got ' .. #args .. ' arguments')
  end

  local key = keys[1]
  local ch_s, dtype = string.match(key, '^comsrv:(%d+):([TSCA])$')
  local ch = ch_s and parse_id(ch_s, false, MAX_U32)
  if not ch then
    return err('invalid key ' .. show(key) ..
      ': expected comsrv:{ch}:{T|S|C|A} with ch an integer 1..4294967295 without leading zeros')
  end

  -- timestamp (optional; "" counts as absent): decimal unix seconds, not in the future by
  -- more than MAX_TS_AHEAD (a channel stamped far ahead would never look stale)
  local now = tonumber(redis.call('TIME')[1])
  local ts
  if args[2] ~= nil and args[2] ~= '' then
    local n = string.match(args[2], '^%d+%.?%d*$') and tonumber(args[2])
    if n == nil or not is_finite(n) or n > now + MAX_TS_AHEAD then
      return err('invalid unix_ts ' .. show(args[2]) ..
        ': expected decimal unix seconds, at most ' .. MAX_TS_AHEAD .. ' s ahead of the server clock')
    end
    ts = math.floor(n)
  else
    ts = now
  end

  -- values
  local ok, values = pcall(cjson.decode, args[1])
  if not ok then
    return err('invalid values_json: ' .. tostring(values))
  end
  if type(values) ~= 'table' then
    local got = (values == cjson.null) and 'null' or type(values)
    return err('invalid values_json: expected a JSON object {"point_id": value, ...}, got ' .. got)
  end

  return write_values(key, ch_s, dtype, values, ts)
end

-- ===================================================================
-- MODELS (PROTOCOL.md §2 modsrv_calculate). Site-wide keys, a documented cluster exception:
--   model:{id}                   hash: the model (modsrv_model_save)
--   model:index:{ch}:{type}      hash: point id -> ids of the models reading it (space-separated)
-- A model computes ONE output point (channel_id, data_type, point_id) from input points of any
-- channels: sum, avg, min, max, scale (input * scale + offset), diff (first - second).
-- ===================================================================
local MODEL_OPS = { sum = true, avg = true, min = true, max = true, scale = true, diff = true }
local MODEL_INPUTS_MAX = 64
-- Models evaluated one inside another (outputs feeding models) at most this deep; cycles are
-- refused when saved, this bounds what a hand-edited definition could do.
local MODEL_DEPTH_MAX = 16

local function now_s()
  return tonumber(redis.call('TIME')[1])
end

local function model_index_key(ch_s, dtype)
  return 'model:index:' .. ch_s .. ':' .. dtype
end

-- Entries kept by each of the library's caches before it is cleared.
local CACHE_MAX = 4096

-- "ch:T:pid" -> ch, T, pid
local function split_point(p)
  return string.match(p, '^(%d+):([TSCA]):(%d+)$')
end

-- Calls `each(id, a, b)` once for every id the space-separated id lists of index `idx` hold
-- for `pids`, in order: the models (or rules) a write of those points reaches. (No closure
-- per write and no pattern matching for the usual one-id entry: this runs on every write.)
local function indexed_ids(idx, pids, each, a, b)
  local seen = {}
  for i = 1, #pids, HSET_CHUNK do
    local ids = redis.call('HMGET', idx, unpack(pids, i, math.min(i + HSET_CHUNK - 1, #pids)))
    for j = 1, #ids do
      local s = ids[j]
      if not s then -- luacheck: ignore 542 (no model/rule reads this point)
      elseif not string.find(s, ' ', 1, true) then
        if not seen[s] then
          seen[s] = true
          each(s, a, b)
        end
      else
        for id in string.gmatch(s, '%S+') do
          if not seen[id] then
            seen[id] = true
            each(id, a, b)
          end
        end
      end
    end
  end
end

-- Adds `id` to (or drops it from) the id list of point `p` ("ch:T:pid") in the index
-- `index_key(ch, T)`, and keeps lib:hooks in step.
local function index_id(index_key, id, p, add)
  local ch, t, pid = split_point(p)
  local idx = index_key(ch, t)
  local ids = {}
  for x in string.gmatch(redis.call('HGET', idx, pid) or '', '%S+') do
    if x ~= id then ids[#ids + 1] = x end
  end
  if add then ids[#ids + 1] = id end
  if #ids == 0 then
    redis.call('HDEL', idx, pid)
  else
    redis.call('HSET', idx, pid, table.concat(ids, ' '))
  end
  refresh_hooks(ch .. ':' .. t)
end

-- "ch:T:pid" -> {hash = "ch:T", pid}, memoized by the text (never stale; cleared when full):
-- every write evaluating models and rules splits the same few points.
local parts_cache, parts_count = {}, 0

local function point_parts(p)
  local s = parts_cache[p]
  if s then return s end
  local ch, t, pid = split_point(p)
  s = { hash = ch and (ch .. ':' .. t), pid = pid }
  if parts_count >= CACHE_MAX then parts_cache, parts_count = {}, 0 end
  parts_cache[p] = s
  parts_count = parts_count + 1
  return s
end

-- The current value of point `s` (from point_parts): from the write being processed when it
-- is one of its points, else from Redis.
local function point_value(s, written)
  if written and written.hash == s.hash then
    local v = written.points[s.pid]
    if v ~= nil then return v end
  end
  return redis.call('HGET', 'comsrv:' .. s.hash, s.pid)
end

-- Model definitions read from Redis, by id. They change only through this library's save and
-- delete, which drop the entry; reached only through the index those functions keep. Cleared
-- when full. (Edit models through the functions, never with HSET by hand.)
local model_cache, model_cache_count = {}, 0

-- The model's definition: {op, out = "ch:T:pid", inputs = {point_parts(...), ...}, scale, offset};
-- false when absent or disabled.
local function model_def(id)
  local m = model_cache[id]
  if m ~= nil then return m end
  local v = redis.call('HMGET', 'model:' .. id, 'op', 'output', 'inputs', 'scale', 'offset', 'enabled')
  if not v[1] or v[6] == '0' then
    m = false
  else
    local inputs = {}
    for p in string.gmatch(v[3] or '', '[^,]+') do inputs[#inputs + 1] = point_parts(p) end
    m = { op = v[1], out = v[2], inputs = inputs, scale = tonumber(v[4]) or 1, offset = tonumber(v[5]) or 0 }
  end
  if model_cache_count >= CACHE_MAX then model_cache, model_cache_count = {}, 0 end
  model_cache[id] = m
  model_cache_count = model_cache_count + 1
  return m
end


-- The model's value from its inputs' current values; nil when any input has no number.
-- (One pass, no table: this runs for every model a write reaches.)
local function model_value(m, written)
  local op, inputs = m.op, m.inputs
  local r
  for i = 1, #inputs do
    local v = tonumber(point_value(inputs[i], written) or '')
    if not v or not is_finite(v) then return nil end
    if i == 1 then
      r = v
    elseif op == 'sum' or op == 'avg' then
      r = r + v
    elseif op == 'min' then
      if v < r then r = v end
    elseif op == 'max' then
      if v > r then r = v end
    else -- diff (two inputs)
      r = r - v
    end
  end
  if op == 'avg' then
    r = r / #inputs
  elseif op == 'scale' then
    r = r * m.scale + m.offset
  end
  if not is_finite(r) then return nil end
  return r
end

-- Removes points of comsrv:{ch}:{type} (a model whose inputs are gone): the gateway is told,
-- and the models reading them follow (their outputs go too).
local function remove_points(ch_s, dtype, pids, ts, depth)
  local key = 'comsrv:' .. ch_s .. ':' .. dtype
  local removed = redis.call('HDEL', key, unpack(pids))
  if removed > 0 then
    record_write(ch_s, dtype)
    run_models(ch_s, dtype, pids, ts, depth + 1)
  end
  return removed
end

-- Computes model `id` into `out` (output hash "ch:T" -> {writes = {pid -> value}, gone = {pid}}):
-- its value, or its removal when an input has no value. Returns the value, or nil.
local function calculate_into(id, out, written)
  local m = model_def(id)
  if not m then return nil end
  local o = point_parts(m.out)
  if not o.hash then return nil end
  local h, pid = o.hash, o.pid
  out[h] = out[h] or { writes = {}, gone = {} }
  local v = model_value(m, written)
  if v == nil then
    table.insert(out[h].gone, pid)
  else
    out[h].writes[pid] = v
  end
  return v
end

-- Writes what models computed: one write (or removal) per output hash, through the write path
-- (the values are finite numbers computed here: the validation of device input is skipped).
local function write_outputs(out, ts, depth, nested)
  for h, o in pairs(out) do
    local ch, t = string.match(h, '^(%d+):(%a)$')
    if next(o.writes) then
      write_computed(ch, t, o.writes, ts, depth + 1, nested)
    end
    if #o.gone > 0 then
      remove_points(ch, t, o.gone, ts, depth)
    end
  end
end

-- Computes model `id` and writes its output. Returns the value written, or nil.
local function calculate(id, ts, depth)
  local out = {}
  local v = calculate_into(id, out, nil)
  write_outputs(out, ts, depth, false)
  return v
end

run_models = function(ch_s, dtype, pids, ts, depth, written)
  local idx = model_index_key(ch_s, dtype)
  if depth >= MODEL_DEPTH_MAX then return end
  local out = {}
  indexed_ids(idx, pids, calculate_into, out, written)
  -- Inside a write (or a removal) that already ensured the epoch.
  write_outputs(out, ts, depth, true)
end

local function index_model(id, inputs, add)
  for _, p in ipairs(inputs) do index_id(model_index_key, id, p, add) end
end

-- Whether the model `id` writing `out` from `inputs` would close a cycle: following models
-- from `out` (what reads it, what reads their outputs, ...) reaches one of `inputs`.
local function closes_cycle(id, out, inputs)
  local wanted = {}
  for _, p in ipairs(inputs) do wanted[p] = true end
  if wanted[out] then return true end
  local seen, stack = { [out] = true }, { out }
  local steps = 0
  while #stack > 0 do
    local p = table.remove(stack)
    steps = steps + 1
    if steps > 10000 then return true end -- a graph this large is refused, not walked
    local ch, t, pid = split_point(p)
    for mid in string.gmatch(redis.call('HGET', model_index_key(ch, t), pid) or '', '%S+') do
      if mid ~= id then
        local o = redis.call('HGET', 'model:' .. mid, 'output')
        if o then
          if wanted[o] then return true end
          if not seen[o] then
            seen[o] = true
            stack[#stack + 1] = o
          end
        end
      end
    end
  end
  return false
end

local function model_id_of(key, fname)
  local id = string.match(key, '^model:([%w_%.%-]+)$')
  if not id or #id > 64 or id == 'index' or id == 'ids' then
    return nil, err('invalid key ' .. show(key) .. ': expected model:{id}, id 1-64 of A-Za-z0-9_.- (' .. fname .. ')')
  end
  return id
end

-- Whether channel `ch_s` has any data (a definition may only read known channels).
local function channel_known(ch_s)
  local base = 'comsrv:' .. ch_s .. ':'
  return redis.call('EXISTS', base .. 'T', base .. 'S', base .. 'C', base .. 'A') > 0
end

local function point_of(v, field)
  if type(v) ~= 'table' then return nil, field .. ': expected {channel_id, data_type, point_id}' end
  local ch, t, pid = v.channel_id, v.data_type or 'T', v.point_id
  if type(ch) ~= 'number' or ch % 1 ~= 0 or ch < 1 or ch > MAX_U32 then return nil, field .. '.channel_id: expected an integer 1..4294967295' end
  if type(t) ~= 'string' or not string.match(t, '^[TSCA]$') then return nil, field .. '.data_type: expected one of T S C A' end
  if type(pid) ~= 'number' or pid % 1 ~= 0 or pid < 0 or pid > MAX_U32 then return nil, field .. '.point_id: expected an integer 0..4294967295' end
  return format_int(ch) .. ':' .. t .. ':' .. format_int(pid)
end

-- -------------------------------------------------------------------
-- modsrv_model_save:
--   FCALL modsrv_model_save 1 model:{id} <model_json>  ->  the output value written, or nil
--   model_json: {output: {channel_id, data_type?, point_id}, op, inputs: [{channel_id,
--                data_type?, point_id}, ...], scale?, offset?, enabled?}
-- -------------------------------------------------------------------
local function modsrv_model_save(keys, args)
  if #keys ~= 1 or #args ~= 1 then
    return err('modsrv_model_save expects 1 key (model:{id}) and 1 argument (model_json)')
  end
  local id, e = model_id_of(keys[1], 'modsrv_model_save')
  if not id then return e end
  local ok, m = pcall(cjson.decode, args[1])
  if not ok or type(m) ~= 'table' then return err('INVALID_PARAMETER model_json: expected a JSON object (nothing saved)') end
  local function bad(msg) return err('INVALID_PARAMETER ' .. msg .. ' (nothing saved)') end
  local out, why = point_of(m.output, 'output')
  if not out then return bad(why) end
  if type(m.op) ~= 'string' or not MODEL_OPS[m.op] then return bad('op: expected one of sum avg min max scale diff') end
  if type(m.inputs) ~= 'table' or #m.inputs < 1 or #m.inputs > MODEL_INPUTS_MAX then
    return bad('inputs: expected 1-' .. MODEL_INPUTS_MAX .. ' points')
  end
  if (m.op == 'scale' and #m.inputs ~= 1) or (m.op == 'diff' and #m.inputs ~= 2) then
    return bad('inputs: ' .. m.op .. ' takes ' .. (m.op == 'scale' and '1 input' or '2 inputs'))
  end
  local inputs = {}
  for i, v in ipairs(m.inputs) do
    local p, w = point_of(v, 'inputs[' .. i .. ']')
    if not p then return bad(w) end
    local ch = string.match(p, '^(%d+):')
    if not channel_known(ch) then return bad('inputs[' .. i .. '].channel_id: channel ' .. ch .. ' not found') end
    inputs[i] = p
  end
  for _, f in ipairs({ 'scale', 'offset' }) do
    if m[f] ~= nil and (type(m[f]) ~= 'number' or not is_finite(m[f])) then return bad(f .. ': expected a finite number') end
  end
  if m.enabled == nil then m.enabled = true end
  if type(m.enabled) ~= 'boolean' then return bad('enabled: expected true or false') end
  if closes_cycle(id, out, inputs) then
    return bad('inputs: the model would feed itself (a cycle through ' .. out .. ')')
  end
  model_cache[id] = nil
  local old = redis.call('HMGET', keys[1], 'inputs', 'output')
  if old[1] then
    local prev = {}
    for p in string.gmatch(old[1], '[^,]+') do prev[#prev + 1] = p end
    index_model(id, prev, false)
  end
  redis.call('DEL', keys[1])
  redis.call('SADD', 'model:ids', id)
  redis.call('HSET', keys[1], 'id', id, 'op', m.op, 'output', out, 'inputs', table.concat(inputs, ','),
    'scale', format_number(m.scale or 1), 'offset', format_number(m.offset or 0),
    'enabled', m.enabled and '1' or '0')
  if m.enabled then index_model(id, inputs, true) end
  -- A moved output leaves nothing stale behind.
  if old[2] and old[2] ~= out then
    local ch, t, pid = split_point(old[2])
    remove_points(ch, t, { pid }, now_s(), 0)
  end
  if not m.enabled then
    local ch, t, pid = split_point(out)
    remove_points(ch, t, { pid }, now_s(), 0)
    return nil
  end
  local v = calculate(id, now_s(), 0)
  return v and format_number(v)
end

-- -------------------------------------------------------------------
-- modsrv_model_delete:
--   FCALL modsrv_model_delete 1 model:{id}  ->  1 deleted, 0 no such model
--   Its output point is removed (clients are told).
-- -------------------------------------------------------------------
local function modsrv_model_delete(keys, args)
  if #keys ~= 1 or #args ~= 0 then
    return err('modsrv_model_delete expects 1 key (model:{id}) and no arguments')
  end
  local id, e = model_id_of(keys[1], 'modsrv_model_delete')
  if not id then return e end
  model_cache[id] = nil
  redis.call('SREM', 'model:ids', id)
  local old = redis.call('HMGET', keys[1], 'inputs', 'output')
  if not old[1] then return 0 end
  local prev = {}
  for p in string.gmatch(old[1], '[^,]+') do prev[#prev + 1] = p end
  index_model(id, prev, false)
  redis.call('DEL', keys[1])
  local ch, t, pid = split_point(old[2] or '')
  if ch then remove_points(ch, t, { pid }, now_s(), 0) end
  return 1
end

-- -------------------------------------------------------------------
-- modsrv_calculate:
--   FCALL modsrv_calculate 1 model:{id}  ->  the output value written, or nil (an input has
--   no value: the output is removed; or no such / disabled model)
-- -------------------------------------------------------------------
local function modsrv_calculate(keys, args)
  if #keys ~= 1 then return err('modsrv_calculate expects 1 key (model:{id})') end
  local id, e = model_id_of(keys[1], 'modsrv_calculate')
  if not id then return e end
  local v = calculate(id, now_s(), 0)
  return v and format_number(v)
end

-- -------------------------------------------------------------------
-- netsrv_collect_data:
--   FCALL netsrv_collect_data 3 netsrv:seq netsrv:dirty netsrv:epoch <cursor> <epoch> <limit> [<wake>]
--   -> {epoch, head_seq, next_cursor, reset, more, member1, score1, ...}
--   <wake> "1": when this call leaves the caller caught up, the next write publishes on
--   netsrv:wake (see WAKE_CHANNEL).
-- -------------------------------------------------------------------
local function netsrv_collect_data(keys, args)
  if #keys ~= 3 or keys[1] ~= SEQ_KEY or keys[2] ~= DIRTY_KEY or keys[3] ~= EPOCH_KEY then
    return err('netsrv_collect_data expects 3 keys: ' .. SEQ_KEY .. ' ' .. DIRTY_KEY .. ' ' .. EPOCH_KEY)
  end
  if #args < 3 or #args > 4 then
    return err('netsrv_collect_data expects <cursor> <epoch> <limit> [<wake>], got ' .. #args .. ' arguments')
  end
  local wake = args[4]
  if wake ~= nil and wake ~= '0' and wake ~= '1' then
    return err('invalid wake ' .. show(wake) .. ': expected 0 or 1')
  end
  local cursor = parse_uint(args[1])
  if cursor == nil then
    return err('invalid cursor ' .. show(args[1]) .. ': expected a non-negative integer')
  end
  local caller_epoch = args[2]
  local limit = parse_uint(args[3])
  if limit == nil or limit < 1 then
    return err('invalid limit ' .. show(args[3]) .. ': expected a positive integer')
  end

  local epoch = ensure_epoch()
  local head = tonumber(redis.call('GET', SEQ_KEY) or '0')
  if head == nil then
    return err(SEQ_KEY .. ' does not hold an integer')
  end

  -- Self-repair: netsrv:seq behind netsrv:dirty (seq key set back or lost).
  -- Writes made since then got scores that may be below (or equal to) older
  -- entries: they would be missed, paging could skip tied scores, and a
  -- cursor above head would reset forever. Renumber the set above its highest
  -- score (order kept, scores unique again), move seq to the new top, and
  -- rotate the epoch so every consumer resyncs from scratch. Runs once.
  local top = redis.call('ZREVRANGE', DIRTY_KEY, 0, 0, 'WITHSCORES')
  if top[2] and tonumber(top[2]) > head then
    local base = math.floor(tonumber(top[2]))
    local members = redis.call('ZRANGE', DIRTY_KEY, 0, -1)
    local zargs = {}
    for i, m in ipairs(members) do
      zargs[#zargs + 1] = format_int(base + i)
      zargs[#zargs + 1] = m
      if #zargs >= 2 * HSET_CHUNK or i == #members then
        redis.call('ZADD', DIRTY_KEY, unpack(zargs))
        zargs = {}
      end
    end
    head = base + #members
    redis.call('SET', SEQ_KEY, format_int(head))
    epoch = rotate_epoch()
  end

  local reset = 0
  if (caller_epoch ~= '' and caller_epoch ~= epoch) or cursor > head then
    reset = 1
    cursor = 0
  end

  local entries = redis.call('ZRANGEBYSCORE', DIRTY_KEY, '(' .. format_int(cursor), '+inf',
    'WITHSCORES', 'LIMIT', 0, limit)

  local n = #entries / 2
  local next_cursor = head
  local more = 0
  if n > 0 and n == limit then
    local last_score = tonumber(entries[#entries])
    if redis.call('ZCOUNT', DIRTY_KEY, '(' .. format_int(last_score), '+inf') > 0 then
      next_cursor = last_score
      more = 1
    end
  end

  if more == 0 and wake == '1' then
    wake_armed = true
  end

  local out = { epoch, head, next_cursor, reset, more }
  for i = 1, #entries, 2 do
    out[#out + 1] = entries[i]
    out[#out + 1] = tonumber(entries[i + 1])
  end
  return out
end

-- ===================================================================
-- CONTROL COMMANDS (PROTOCOL.md §1: comsrv:{ch}:{C|A}:TODO, cmd:{id}, control:results).
-- Site-wide keys, a documented cluster exception like netsrv:* (lua/README.md):
--   cmd:seq                              string: CMD_{n} counter
--   cmd:{id}                             hash: the command record (TTL CMD_TTL)
--   cmd:dedup:{client_id}:{request_id}   string: the command a request created (DEDUP_WINDOW)
--   cmd:pending:{instance}               zset: an instance's open commands, score = deadline ms
--   control:results                      stream: final states (executed/failed/timeout)
-- ===================================================================
local CMD_SEQ = 'cmd:seq'
local CONTROL_RESULTS = 'control:results'
local CONTROL_RESULTS_MAX = 100000
local CMD_TTL = 86400
local DEDUP_WINDOW = 300
local TIMEOUT_MAX_MS = 3600000

local function bad_param(field, want)
  return err('INVALID_PARAMETER ' .. field .. ': expected ' .. want .. ' (nothing queued)')
end

-- An optional JSON field: absent or null gives the default.
local function given(v, default)
  if v == nil or v == cjson.null then return default end
  return v
end

local function short_string(v, max, pattern)
  return type(v) == 'string' and #v >= 1 and #v <= max and (pattern == nil or string.match(v, pattern) ~= nil)
end

-- Appends a final state to control:results.
-- The audit log of control commands (who, what, when, from where, and how each ended): one
-- entry when a command is queued, one when it ends. Capped like the other logs.
local AUDIT = 'audit:control'
-- Every instance that queued commands (control_expire_all sweeps their pending sets).
local CMD_INSTANCES = 'cmd:instances'
local AUDIT_MAX = 100000

-- Final acks waiting for their sender (any gateway it connects to takes them):
--   ctl:acks:{client_id}   list of "{control:results id} {operator}", capped, expiring
local ACKS_MAX = 100
local ACKS_TTL_MS = 120000

-- Whether acks of `client_id` go to a WebSocket (HTTP callers poll, rules have no client).
local function routable(client_id)
  local p = string.sub(client_id or '', 1, 5)
  return client_id ~= nil and client_id ~= '' and p ~= 'http~' and p ~= 'rule:'
end

local function append_result(rec, status, success, actual, message, now)
  local id = redis.call('XADD', CONTROL_RESULTS, 'MAXLEN', '~', CONTROL_RESULTS_MAX, '*',
    'command_id', rec.command_id, 'instance', rec.instance, 'client_id', rec.client_id,
    'request_id', rec.request_id or '', 'status', status, 'success', success and '1' or '0',
    'actual_value', actual or '', 'message', message or '', 'time', now,
    'operator', rec.operator or '')
  if routable(rec.client_id) then
    local k = 'ctl:acks:' .. rec.client_id
    redis.call('RPUSH', k, id .. ' ' .. (rec.operator or ''))
    redis.call('LTRIM', k, -ACKS_MAX, -1)
    redis.call('PEXPIRE', k, ACKS_TTL_MS)
  end
  redis.call('XADD', AUDIT, 'MAXLEN', '~', AUDIT_MAX, '*',
    'event', status, 'command_id', rec.command_id, 'operator', rec.operator or '',
    'channel_id', rec.channel_id, 'data_type', rec.data_type, 'point_id', rec.point_id,
    'success', success and '1' or '0', 'actual_value', actual or '', 'message', message or '',
    'time', now)
end

local CMD_FIELDS = { 'command_id', 'status', 'deadline', 'channel_id', 'data_type', 'point_id',
  'instance', 'client_id', 'request_id', 'operator' }

local function command_record(key)
  local v = redis.call('HMGET', key, unpack(CMD_FIELDS))
  if not v[1] then return nil end
  local rec = {}
  for i, f in ipairs(CMD_FIELDS) do rec[f] = v[i] end
  return rec
end

-- The command times out (once: only a queued command can).
local function time_out(key, rec, now)
  redis.call('HSET', key, 'status', 'timeout', 'finished_at', now)
  redis.call('ZREM', 'cmd:pending:' .. rec.instance, rec.command_id)
  append_result(rec, 'timeout', false, nil, 'no result from the device within the timeout', now)
end

-- Queues a validated command `c` on `todo` (comsrv:{ch_s}:{dtype}:TODO): CMD_{n}, the
-- record, the device's list, the instance's pending set, the de-duplication key `dedup`.
local function enqueue(todo, ch_s, dtype, c, dedup)
  local base = 'comsrv:' .. ch_s .. ':'
  if redis.call('EXISTS', base .. 'T', base .. 'S', base .. 'C', base .. 'A') == 0 then
    return err('CHANNEL_NOT_FOUND channel ' .. ch_s .. ' not found (nothing queued)')
  end
  local ttype = redis.call('TYPE', todo)['ok']
  if ttype ~= 'list' and ttype ~= 'none' then
    return err('WRONGTYPE ' .. todo .. ' holds a ' .. ttype .. ', not a list (nothing queued)')
  end
  -- The point must exist: declared in the channel's point table (cfg:points:{ch}, kept by the
  -- gateway's configuration routes) when it has one, else holding a value in the channel's
  -- hash. A command to anything else would be "executed" onto a phantom point.
  local field = dtype .. ':' .. format_int(c.point_id)
  local table_key = 'cfg:points:' .. ch_s
  local def = redis.call('HGET', table_key, field)
  if not def then
    if redis.call('EXISTS', table_key) == 1 then
      return err('INVALID_PARAMETER point_id: point ' .. field .. ' is not declared in the point table of channel ' ..
        ch_s .. ' (nothing queued)')
    end
    if redis.call('HEXISTS', base .. dtype, format_int(c.point_id)) == 0 then
      return err('INVALID_PARAMETER point_id: channel ' .. ch_s .. ' has no point ' .. field ..
        ' (no value in ' .. base .. dtype .. '; nothing queued)')
    end
  end
  if def then
    local ok, d = pcall(cjson.decode, def)
    if ok and type(d) == 'table' then
      local lo = type(d.min) == 'number' and d.min or nil
      local hi = type(d.max) == 'number' and d.max or nil
      if (lo and c.value < lo) or (hi and c.value > hi) then
        return err('INVALID_PARAMETER value: ' .. format_number(c.value) .. ' is outside [' ..
          (lo and format_number(lo) or '-inf') .. ', ' .. (hi and format_number(hi) or 'inf') ..
          '], the limits of point ' .. field .. ' of channel ' .. ch_s .. ' (nothing queued)')
      end
    end
  end

  local now = now_ms()
  -- Ids never repeat across a reset (FLUSHALL, an empty restart, a failover to a replica
  -- that lost the counter): a missing counter starts at the clock, in thousandths of a
  -- millisecond, above every id handed out before it (up to 1000 commands a ms).
  if redis.call('EXISTS', CMD_SEQ) == 0 then
    redis.call('SET', CMD_SEQ, format_int(tonumber(now) * 1000))
  end
  local id = 'CMD_' .. format_int(redis.call('INCR', CMD_SEQ))
  local deadline = format_int(tonumber(now) + c.timeout_ms)
  local pid, value = format_int(c.point_id), format_number(c.value)
  local key = 'cmd:' .. id
  redis.call('HSET', key, 'command_id', id, 'channel_id', ch_s, 'data_type', dtype,
    'point_id', pid, 'command_type', c.command_type, 'value', value,
    'client_id', c.client_id, 'request_id', c.request_id or '', 'instance', c.instance,
    'operator', c.operator or '', 'reason', c.reason or '', 'origin', c.origin or '', 'status', 'queued',
    'queued_at', now, 'deadline', deadline, 'source', c.source or '')
  redis.call('EXPIRE', key, CMD_TTL)
  redis.call('XADD', AUDIT, 'MAXLEN', '~', AUDIT_MAX, '*',
    'event', 'queued', 'command_id', id, 'operator', c.operator or '', 'source', c.source or '',
    'origin', c.origin or '', 'client_id', c.client_id, 'channel_id', ch_s, 'data_type', dtype,
    'point_id', pid, 'command_type', c.command_type, 'value', value, 'reason', c.reason or '',
    'time', now)
  redis.call('RPUSH', todo, '{"command_id":"' .. id .. '","point_id":' .. pid .. ',"value":' .. value ..
    ',"command_type":"' .. c.command_type .. '","deadline_ms":' .. deadline .. '}')
  redis.call('ZADD', 'cmd:pending:' .. c.instance, deadline, id)
  redis.call('SADD', CMD_INSTANCES, c.instance)
  if dedup then
    redis.call('SET', dedup, id, 'EX', DEDUP_WINDOW)
  end
  return { id, 'queued', 0 }
end

-- -------------------------------------------------------------------
-- control_submit:
--   FCALL control_submit 1 comsrv:{ch}:{C|A}:TODO <command_json>
--   command_json: {point_id, command_type ("set_value" -> A | "control" -> C, value 0/1),
--                  value, client_id, request_id?, instance, timeout_ms, operator?, reason?,
--                  source?}  (source: where the command came from, e.g. the client's address)
--   -> {command_id, status, duplicate (0|1)}
-- -------------------------------------------------------------------
local function control_submit(keys, args)
  if #keys ~= 1 or #args ~= 1 then
    return err('control_submit expects 1 key (comsrv:{ch}:{C|A}:TODO) and 1 argument (command_json)')
  end
  local todo = keys[1]
  local ch_s, dtype = string.match(todo, '^comsrv:(%d+):([CA]):TODO$')
  if not (ch_s and parse_id(ch_s, false, MAX_U32)) then
    return err('invalid key ' .. show(todo) .. ': expected comsrv:{ch}:{C|A}:TODO')
  end
  local ok, c = pcall(cjson.decode, args[1])
  if not ok or type(c) ~= 'table' then
    return err('INVALID_PARAMETER command_json: expected a JSON object (nothing queued)')
  end
  local want_type = (dtype == 'A') and 'set_value' or 'control'
  if c.command_type ~= want_type then
    return bad_param('command_type', '"' .. want_type .. '" for a ' .. dtype .. ' queue')
  end
  if type(c.point_id) ~= 'number' or c.point_id % 1 ~= 0 or c.point_id < 0 or c.point_id > MAX_U32 then
    return bad_param('point_id', 'an integer 0..4294967295')
  end
  if type(c.value) ~= 'number' or not is_finite(c.value) then
    return bad_param('value', 'a finite number')
  end
  if dtype == 'C' and c.value ~= 0 and c.value ~= 1 then
    return bad_param('value', '0 or 1 for a control command')
  end
  -- 128: a WebSocket client id (≤ 64) or an HTTP caller's `http~{user}`.
  if not short_string(c.client_id, 128) then return bad_param('client_id', 'a string of 1-128 bytes') end
  if c.request_id ~= nil and c.request_id ~= cjson.null and not short_string(c.request_id, 128) then
    return bad_param('request_id', 'a string of 1-128 bytes')
  end
  if c.request_id == cjson.null then c.request_id = nil end
  if not short_string(c.instance, 64, '^[%w_.:%-]+$') then
    return bad_param('instance', '1-64 of A-Za-z0-9_.:-')
  end
  if type(c.timeout_ms) ~= 'number' or c.timeout_ms % 1 ~= 0 or c.timeout_ms < 1 or c.timeout_ms > TIMEOUT_MAX_MS then
    return bad_param('timeout_ms', 'an integer 1..' .. TIMEOUT_MAX_MS)
  end
  for _, f in ipairs({ 'operator', 'reason', 'source' }) do
    if c[f] == cjson.null then c[f] = nil end
    if c[f] ~= nil and (type(c[f]) ~= 'string' or #c[f] > 256) then
      return bad_param(f, 'a string of at most 256 bytes')
    end
  end

  -- A retried request is the same command.
  local dedup
  if c.request_id then
    dedup = 'cmd:dedup:' .. c.client_id .. ':' .. c.request_id
    local id = redis.call('GET', dedup)
    if id then
      return { id, redis.call('HGET', 'cmd:' .. id, 'status') or 'unknown', 1 }
    end
  end
  return enqueue(todo, ch_s, dtype, c, dedup)
end

-- -------------------------------------------------------------------
-- control_report (the device side):
--   FCALL control_report 1 cmd:{id} <result_json>
--   result_json: {success, actual_value?, message?}  ->  the command's final status
-- -------------------------------------------------------------------
local function control_report(keys, args)
  if #keys ~= 1 or #args ~= 1 then
    return err('control_report expects 1 key (cmd:{id}) and 1 argument (result_json)')
  end
  local key = keys[1]
  if not string.match(key, '^cmd:CMD_%d+$') then
    return err('invalid key ' .. show(key) .. ': expected cmd:CMD_{n}')
  end
  local ok, r = pcall(cjson.decode, args[1])
  if not ok or type(r) ~= 'table' or type(r.success) ~= 'boolean' then
    return err('INVALID_PARAMETER result_json: expected {"success":true|false,"actual_value"?:number,"message"?:string}')
  end
  if r.actual_value == cjson.null then r.actual_value = nil end
  if r.actual_value ~= nil and (type(r.actual_value) ~= 'number' or not is_finite(r.actual_value)) then
    return err('INVALID_PARAMETER actual_value: expected a finite number')
  end
  if r.message == cjson.null then r.message = nil end
  if r.message ~= nil and (type(r.message) ~= 'string' or #r.message > 256) then
    return err('INVALID_PARAMETER message: expected a string of at most 256 bytes')
  end
  local rec = command_record(key)
  if not rec then
    return err('COMMAND_NOT_FOUND ' .. key .. ' (unknown or expired)')
  end
  local now = now_ms()
  local actual = r.actual_value and format_number(r.actual_value)
  if rec.status == 'queued' and tonumber(now) > tonumber(rec.deadline) then
    -- Reported after its deadline: it timed out (the expiry sweep had not run yet).
    time_out(key, rec, now)
    rec.status = 'timeout'
  end
  if rec.status ~= 'queued' then
    -- Final already: recorded, never a second final state.
    redis.call('HSET', key, 'late_result', args[1], 'late_at', now)
    return rec.status
  end
  local status = r.success and 'executed' or 'failed'
  redis.call('HSET', key, 'status', status, 'success', r.success and '1' or '0',
    'actual_value', actual or '', 'message', r.message or '', 'finished_at', now)
  redis.call('ZREM', 'cmd:pending:' .. rec.instance, rec.command_id)
  if r.success and actual then
    -- The device's actual value, through the normal write path (seq, dirty, alarms).
    local wkey = 'comsrv:' .. rec.channel_id .. ':' .. rec.data_type
    local wrote = write_values(wkey, rec.channel_id, rec.data_type,
      { [rec.point_id] = r.actual_value }, math.floor(tonumber(now) / 1000))
    if type(wrote) == 'table' and wrote.err then return wrote end
  end
  append_result(rec, status, r.success, actual, r.message, now)
  return status
end

-- -------------------------------------------------------------------
-- control_expire:
--   FCALL control_expire 1 cmd:pending:{instance} [<limit>]  ->  commands timed out
--   The gateway instance's sweep: every queued command past its deadline times out once.
-- -------------------------------------------------------------------
local function control_expire(keys, args)
  if #keys ~= 1 or not string.match(keys[1], '^cmd:pending:[%w_.:%-]+$') then
    return err('control_expire expects 1 key (cmd:pending:{instance})')
  end
  local limit = 100
  if args[1] ~= nil then
    limit = parse_uint(args[1])
    if not limit or limit < 1 then return err('invalid limit ' .. show(args[1])) end
  end
  local now = now_ms()
  local due = redis.call('ZRANGEBYSCORE', keys[1], '-inf', now, 'LIMIT', 0, limit)
  local n = 0
  for _, id in ipairs(due) do
    local key = 'cmd:' .. id
    local rec = command_record(key)
    if rec and rec.status == 'queued' then
      time_out(key, rec, now)
      n = n + 1
    else
      redis.call('ZREM', keys[1], id)
    end
  end
  return n
end


-- control_expire_all:
--   FCALL control_expire_all 0 [<limit>]  ->  commands timed out
--   Any gateway's sweep over every instance's pending commands (an instance that died
--   included): each overdue command times out once. Instances with nothing pending leave
--   cmd:instances.
local function control_expire_all(keys, args)
  local limit = 100
  if args[1] ~= nil then
    limit = parse_uint(args[1])
    if not limit or limit < 1 then return err('invalid limit ' .. show(args[1])) end
  end
  local n = 0
  for _, inst in ipairs(redis.call('SMEMBERS', CMD_INSTANCES)) do
    local key = 'cmd:pending:' .. inst
    if n < limit then n = n + control_expire({ key }, { format_int(limit - n) }) end
    if redis.call('ZCARD', key) == 0 then redis.call('SREM', CMD_INSTANCES, inst) end
  end
  return n
end

-- The acks waiting for `client_id` of commands `user` sent (or sent with no operator
-- recorded), as control:results entries (flat field lists), oldest first; taken, so exactly
-- one connection gets each. Other users' acks stay for them.
local function take_acks(client_id, user)
  local k = 'ctl:acks:' .. client_id
  local items = redis.call('LRANGE', k, 0, -1)
  if #items == 0 then return {} end
  local out, keep = {}, {}
  for _, item in ipairs(items) do
    local id, op = string.match(item, '^(%S+) ?(.*)$')
    if op == '' or op == user then
      local e = redis.call('XRANGE', CONTROL_RESULTS, id, id)
      if e[1] then out[#out + 1] = e[1] end
    else
      keep[#keep + 1] = item
    end
  end
  redis.call('DEL', k)
  if #keep > 0 then
    redis.call('RPUSH', k, unpack(keep))
    redis.call('PEXPIRE', k, ACKS_TTL_MS)
  end
  return out
end

-- The client id in `key` (`{prefix}{client_id}`, 1-128 bytes), or nil.
local function client_in(key, prefix)
  if type(key) ~= 'string' or string.sub(key, 1, #prefix) ~= prefix then return nil end
  local id = string.sub(key, #prefix + 1)
  if #id < 1 or #id > 128 then return nil end
  return id
end

-- control_acks_take:
--   FCALL control_acks_take 1 ctl:acks:{client_id} <user>  ->  [[entry id, [fields...]]...]
local function control_acks_take(keys, args)
  local id = client_in(keys[1], 'ctl:acks:')
  if #keys ~= 1 or id == nil then return err('control_acks_take expects 1 key ctl:acks:{client_id}') end
  if #args ~= 1 then return err('control_acks_take expects <user>') end
  return take_acks(id, args[1])
end

-- CLIENT IDS across gateways:
--   gw:client:{client_id}   string "{instance} {token} {user}", expiring unless renewed
--   gw:instance:{instance}  pub/sub channel: "replace {client_id} {token}" tells the gateway
--                           holding a client id that another one took it over
local function claim_parts(v)
  return string.match(v or '', '^(%S+) (%S+) (%S+)$')
end

-- control_acks_return:
--   FCALL control_acks_return 2 ctl:acks:{client_id} gw:client:{client_id} <token>
--         <entry id> <operator> [<entry id> <operator>...]
--   -> 1 when the gateway now holding the client id was told (`acks {client_id}` on its
--   gw:instance channel), else 0. Acks a gateway took but could not deliver (the connection
--   was closing) go back to the front of the list, in order; a newer claim of the id (any
--   token but <token>, the connection that could not deliver) is told to take them.
local function control_acks_return(keys, args)
  local id = client_in(keys[1], 'ctl:acks:')
  if #keys ~= 2 or id == nil or keys[2] ~= 'gw:client:' .. id then
    return err('control_acks_return expects 2 keys ctl:acks:{client_id} gw:client:{client_id}')
  end
  local n = (#args - 1) / 2
  if #args < 3 or n ~= math.floor(n) or n > ACKS_MAX or not short_string(args[1], 64, '^%S+$') then
    return err('control_acks_return expects <token> and 1-' .. ACKS_MAX .. ' <entry id> <operator> pairs')
  end
  for i = 1, n do
    if not short_string(args[2 * i], 41, '^%d+%-%d+$') or #args[2 * i + 1] > 256 then
      return err('control_acks_return: pair ' .. i .. ' is not <entry id> <operator>')
    end
  end
  for i = n, 1, -1 do
    redis.call('LPUSH', keys[1], args[2 * i] .. ' ' .. args[2 * i + 1])
  end
  redis.call('LTRIM', keys[1], 0, ACKS_MAX - 1)
  redis.call('PEXPIRE', keys[1], ACKS_TTL_MS)
  local instance, token = claim_parts(redis.call('GET', keys[2]))
  if instance == nil or token == args[1] then return 0 end
  redis.call('PUBLISH', 'gw:instance:' .. instance, 'acks ' .. id)
  return 1
end

-- netsrv_client_claim:
--   FCALL netsrv_client_claim 1 gw:client:{client_id} <instance> <token> <user> <ttl_ms>
--   -> {'held', user} when another user holds it; else {'ok', [entries...]} with the
--   acks that waited for it (see control_acks_take). A holder on another gateway is told
--   to close its connection (4001 replaced).
local function netsrv_client_claim(keys, args)
  local id = client_in(keys[1], 'gw:client:')
  if #keys ~= 1 or id == nil then return err('netsrv_client_claim expects 1 key gw:client:{client_id}') end
  if #args ~= 4 then return err('netsrv_client_claim expects <instance> <token> <user> <ttl_ms>') end
  local instance, token, user = args[1], args[2], args[3]
  local ttl = parse_uint(args[4])
  if not short_string(instance, 64, '^[%w_.:%-]+$') or not short_string(token, 64, '^%S+$')
    or not short_string(user, 64, '^%S+$') or not ttl or ttl < 1 then
    return err('netsrv_client_claim: invalid instance, token, user or ttl')
  end
  local old_instance, old_token, old_user = claim_parts(redis.call('GET', keys[1]))
  if old_user ~= nil and old_user ~= user then return { 'held', old_user } end
  redis.call('SET', keys[1], instance .. ' ' .. token .. ' ' .. user, 'PX', ttl)
  if old_instance ~= nil and old_instance ~= instance then
    redis.call('PUBLISH', 'gw:instance:' .. old_instance, 'replace ' .. id .. ' ' .. old_token)
  end
  return { 'ok', take_acks(id, user) }
end

-- netsrv_client_release:
--   FCALL netsrv_client_release 1 gw:client:{client_id} <token>  ->  1 when it was held by <token>
local function netsrv_client_release(keys, args)
  if #keys ~= 1 or not client_in(keys[1], 'gw:client:') or #args ~= 1 then
    return err('netsrv_client_release expects 1 key gw:client:{client_id} and <token>')
  end
  local _, token = claim_parts(redis.call('GET', keys[1]))
  if token ~= args[1] then return 0 end
  redis.call('DEL', keys[1])
  return 1
end

-- netsrv_client_renew:
--   FCALL netsrv_client_renew N gw:client:{id}... <ttl_ms> "<instance> <token> <user>"...
--   -> the keys now held by another connection (taken over while the message was missed):
--   those connections must close. A claim that expired (or was never made: Redis was down
--   at the connect) is made again.
local function netsrv_client_renew(keys, args)
  local ttl = parse_uint(args[1])
  if not ttl or ttl < 1 or #args ~= #keys + 1 or #keys > 1000 then
    return err('netsrv_client_renew expects N keys, <ttl_ms> and N claims (N <= 1000)')
  end
  local lost = {}
  for i, k in ipairs(keys) do
    local _, token = claim_parts(redis.call('GET', k))
    local _, mine = claim_parts(args[i + 1])
    if mine == nil or not client_in(k, 'gw:client:') then
      return err('netsrv_client_renew: claim ' .. i .. ' is not "<instance> <token> <user>"')
    end
    if token == nil then
      redis.call('SET', k, args[i + 1], 'PX', ttl)
    elseif token == mine then
      redis.call('PEXPIRE', k, ttl)
    else
      lost[#lost + 1] = k
    end
  end
  return lost
end

-- ===================================================================
-- AUTOMATION RULES (PROTOCOL.md §2 rulesrv_evaluate). Site-wide keys, a documented exception:
--   rule:{id}                    hash: the rule (rulesrv_rule_save) and its state (_state,
--                                _last_fired)
--   rule:index:{ch}:{type}       hash: point id -> ids of the rules reading it (space-separated)
--   rule:firings                 stream: every firing with the values that caused it
-- A rule fires when its conditions (all / any) become true — not again until they have been
-- false — and at least cooldown_ms after its previous firing. Actions: queue a control command
-- (through the control path, origin "rule:{id}") or record an event.
-- ===================================================================
local RULE_FIRINGS = 'rule:firings'
local RULE_FIRINGS_MAX = 10000
local RULE_CONDITIONS_MAX = 16
-- Commands queued by rules belong to this instance name: every gateway's expiry sweep covers it.
local RULES_INSTANCE = 'rules'

local function rule_index_key(ch_s, dtype)
  return 'rule:index:' .. ch_s .. ':' .. dtype
end

local function rule_id_from_key(key, fname)
  local id = string.match(key, '^rule:([%w_%.%-]+)$')
  if not id or #id > 64 or id == 'index' or id == 'firings' or id == 'ids' then
    return nil, err('invalid key ' .. show(key) .. ': expected rule:{id}, id 1-64 of A-Za-z0-9_.- (' .. fname .. ')')
  end
  return id
end

-- Conditions as stored: "ch:T:pid op threshold" joined by ';'.
local function rule_conditions(text)
  local out = {}
  for c in string.gmatch(text or '', '[^;]+') do
    local p, op, thr = string.match(c, '^(%S+) (%S+) (%S+)$')
    if p then out[#out + 1] = { point = p, parts = point_parts(p), op = op, thr = tonumber(thr) } end
  end
  return out
end

-- Whether the rule's conditions hold now.
local function rule_holds(r, written)
  local any, all = false, true
  for _, c in ipairs(r.conds) do
    local v = tonumber(point_value(c.parts, written) or '')
    local ok = v ~= nil and is_finite(v) and breaches(v, c.op, c.thr)
    any = any or ok
    all = all and ok
  end
  local holds = (r.match == 'any') and any or all
  return holds and #r.conds > 0
end

-- The values of the rule's condition points, as a firing records them ("ch:T:pid=v,...").
local function rule_values(r, written)
  local seen = {}
  for i, c in ipairs(r.conds) do
    seen[i] = c.point .. '=' .. (point_value(c.parts, written) or 'null')
  end
  return table.concat(seen, ',')
end

local RULE_FIELDS = { 'conditions', 'match', 'cooldown_ms', 'enabled',
  'action_type', 'action_channel', 'action_point', 'action_command_type', 'action_value',
  'action_message', 'action_level', '_state', '_last_fired' }

-- Rules read from Redis (definition and state), by id: they change only through this
-- library (save and delete drop the entry; firings update it as they write). Reached only
-- through the index those functions keep. Cleared when full.
local rule_cache, rule_cache_count = {}, 0

-- The rule, or false when absent.
local function rule_record(id)
  local r = rule_cache[id]
  if r ~= nil then return r end
  local v = redis.call('HMGET', 'rule:' .. id, unpack(RULE_FIELDS))
  if not v[1] then
    r = false
  else
    r = { id = id }
    for i, f in ipairs(RULE_FIELDS) do r[f] = v[i] end
    r.conds = rule_conditions(r.conditions)
  end
  if rule_cache_count >= CACHE_MAX then rule_cache, rule_cache_count = {}, 0 end
  rule_cache[id] = r
  rule_cache_count = rule_cache_count + 1
  return r
end

-- Runs the rule's action and records the firing. Returns the command id (control), or ''.
local function fire(r, values, now)
  local result, command_id = 'event', ''
  if r.action_type == 'control' then
    local dtype = (r.action_command_type == 'set_value') and 'A' or 'C'
    local q = enqueue('comsrv:' .. r.action_channel .. ':' .. dtype .. ':TODO', r.action_channel, dtype, {
      point_id = tonumber(r.action_point), command_type = r.action_command_type,
      value = tonumber(r.action_value), client_id = 'rule:' .. r.id, instance = RULES_INSTANCE,
      timeout_ms = 10000, origin = 'rule:' .. r.id, reason = 'rule ' .. r.id,
      operator = 'rule:' .. r.id, source = 'redis',
    }, nil)
    if type(q) == 'table' and q.err then
      result = 'error: ' .. q.err
    else
      command_id = q[1]
      result = 'queued'
    end
  end
  redis.call('XADD', RULE_FIRINGS, 'MAXLEN', '~', RULE_FIRINGS_MAX, '*',
    'rule_id', r.id, 'time', now, 'values', values, 'action', r.action_type,
    'result', result, 'command_id', command_id, 'message', r.action_message or '',
    'level', r.action_level or '')
  redis.call('HSET', 'rule:' .. r.id, '_last_fired', now)
  r._last_fired = now
  return command_id
end

-- Evaluates rule `id`: fires on a false -> true change outside its cooldown. Returns 1 when
-- it fired.
local function evaluate_rule(id, written)
  local r = rule_record(id)
  if not r or r.enabled ~= '1' then return 0 end
  local holds = rule_holds(r, written)
  local was = r._state == '1'
  if holds == was then return 0 end
  r._state = holds and '1' or '0'
  redis.call('HSET', 'rule:' .. id, '_state', r._state)
  if not holds then return 0 end
  local now = now_ms()
  local last = tonumber(r._last_fired or '') or 0
  if tonumber(now) - last < (tonumber(r.cooldown_ms) or 0) then return 0 end
  fire(r, rule_values(r, written), now)
  return 1
end

run_rules = function(ch_s, dtype, pids, written)
  indexed_ids(rule_index_key(ch_s, dtype), pids, evaluate_rule, written)
end

local function index_rule(id, conditions_text, add)
  for _, c in ipairs(rule_conditions(conditions_text)) do index_id(rule_index_key, id, c.point, add) end
end

-- -------------------------------------------------------------------
-- rulesrv_rule_save:
--   FCALL rulesrv_rule_save 1 rule:{id} <rule_json>  ->  "OK"
--   rule_json: {conditions: [{channel_id, data_type?, point_id, operator, threshold}, ...],
--               match?: "all"|"any", cooldown_ms?, enabled?,
--               action: {type: "control", channel_id, point_id, command_type, value}
--                     | {type: "event", message?, level?}}
-- -------------------------------------------------------------------
local function rulesrv_rule_save(keys, args)
  if #keys ~= 1 or #args ~= 1 then
    return err('rulesrv_rule_save expects 1 key (rule:{id}) and 1 argument (rule_json)')
  end
  local id, e = rule_id_from_key(keys[1], 'rulesrv_rule_save')
  if not id then return e end
  local ok, r = pcall(cjson.decode, args[1])
  if not ok or type(r) ~= 'table' then return err('INVALID_PARAMETER rule_json: expected a JSON object (nothing saved)') end
  local function bad(msg) return err('INVALID_PARAMETER ' .. msg .. ' (nothing saved)') end
  if type(r.conditions) ~= 'table' or #r.conditions < 1 or #r.conditions > RULE_CONDITIONS_MAX then
    return bad('conditions: expected 1-' .. RULE_CONDITIONS_MAX .. ' conditions')
  end
  local conds = {}
  for i, c in ipairs(r.conditions) do
    local p, why = point_of(c, 'conditions[' .. i .. ']')
    if not p then return bad(why) end
    local ch = string.match(p, '^(%d+):')
    if not channel_known(ch) then return bad('conditions[' .. i .. '].channel_id: channel ' .. ch .. ' not found') end
    if type(c.operator) ~= 'string' or not OPERATORS[c.operator] then
      return bad('conditions[' .. i .. '].operator: expected one of > >= < <= == !=')
    end
    if type(c.threshold) ~= 'number' or not is_finite(c.threshold) then
      return bad('conditions[' .. i .. '].threshold: expected a finite number')
    end
    conds[i] = p .. ' ' .. c.operator .. ' ' .. format_number(c.threshold)
  end
  -- Absent or null takes the default; false is a value (and refused), not an absence.
  local match = given(r.match, 'all')
  if match ~= 'all' and match ~= 'any' then return bad('match: expected "all" or "any"') end
  local cooldown = given(r.cooldown_ms, 0)
  if type(cooldown) ~= 'number' or cooldown % 1 ~= 0 or cooldown < 0 or cooldown > 86400000 then
    return bad('cooldown_ms: expected an integer 0..86400000')
  end
  r.enabled = given(r.enabled, true)
  if type(r.enabled) ~= 'boolean' then return bad('enabled: expected true or false') end
  local a = r.action
  if type(a) ~= 'table' or (a.type ~= 'control' and a.type ~= 'event') then
    return bad('action.type: expected "control" or "event"')
  end
  local fields = { 'action_type', a.type }
  if a.type == 'control' then
    local target, why = point_of({ channel_id = a.channel_id, data_type = 'A', point_id = a.point_id }, 'action')
    if not target then return bad(why) end
    if a.command_type ~= 'set_value' and a.command_type ~= 'control' then
      return bad('action.command_type: expected "set_value" or "control"')
    end
    if type(a.value) ~= 'number' or not is_finite(a.value) or (a.command_type == 'control' and a.value ~= 0 and a.value ~= 1) then
      return bad('action.value: expected a finite number (0 or 1 for control)')
    end
    local ch = string.match(target, '^(%d+):')
    if not channel_known(ch) then return bad('action.channel_id: channel ' .. ch .. ' not found') end
    for _, kv in ipairs({ { 'action_channel', ch }, { 'action_point', format_int(a.point_id) },
      { 'action_command_type', a.command_type }, { 'action_value', format_number(a.value) } }) do
      fields[#fields + 1] = kv[1]
      fields[#fields + 1] = kv[2]
    end
  else
    if a.message ~= nil and (type(a.message) ~= 'string' or #a.message > 256) then
      return bad('action.message: expected a string of at most 256 bytes')
    end
    if a.level ~= nil and (type(a.level) ~= 'number' or a.level % 1 ~= 0 or a.level < 0 or a.level > 3) then
      return bad('action.level: expected an integer 0..3')
    end
    fields[#fields + 1] = 'action_message'
    fields[#fields + 1] = a.message or ''
    fields[#fields + 1] = 'action_level'
    fields[#fields + 1] = format_int(a.level or 0)
  end
  rule_cache[id] = nil
  local old = redis.call('HMGET', keys[1], 'conditions', '_last_fired')
  if old[1] then index_rule(id, old[1], false) end
  redis.call('DEL', keys[1])
  local text = table.concat(conds, ';')
  redis.call('SADD', 'rule:ids', id)
  redis.call('HSET', keys[1], 'id', id, 'conditions', text, 'match', match,
    'cooldown_ms', format_int(cooldown), 'enabled', r.enabled and '1' or '0', unpack(fields))
  if old[2] then
    -- An edited rule keeps its cooldown running.
    redis.call('HSET', keys[1], '_last_fired', old[2])
  end
  if r.enabled then
    index_rule(id, text, true)
    -- The current truth is the starting state: only a later change fires.
    local holds = rule_holds(rule_record(id), nil)
    redis.call('HSET', keys[1], '_state', holds and '1' or '0')
    rule_cache[id] = nil
  end
  return redis.status_reply('OK')
end

-- -------------------------------------------------------------------
-- rulesrv_rule_delete:  FCALL rulesrv_rule_delete 1 rule:{id}  ->  1 deleted, 0 no such rule
-- -------------------------------------------------------------------
local function rulesrv_rule_delete(keys, args)
  if #keys ~= 1 or #args ~= 0 then
    return err('rulesrv_rule_delete expects 1 key (rule:{id}) and no arguments')
  end
  local id, e = rule_id_from_key(keys[1], 'rulesrv_rule_delete')
  if not id then return e end
  rule_cache[id] = nil
  redis.call('SREM', 'rule:ids', id)
  local old = redis.call('HGET', keys[1], 'conditions')
  if not old then return 0 end
  index_rule(id, old, false)
  redis.call('DEL', keys[1])
  return 1
end

-- -------------------------------------------------------------------
-- rulesrv_evaluate:  FCALL rulesrv_evaluate 1 rule:{id}  ->  1 fired, 0 not
--   Evaluates the rule against the current values, as a write of one of its points does.
-- -------------------------------------------------------------------
local function rulesrv_evaluate(keys, args)
  if #keys ~= 1 then return err('rulesrv_evaluate expects 1 key (rule:{id})') end
  local id, e = rule_id_from_key(keys[1], 'rulesrv_evaluate')
  if not id then return e end
  return evaluate_rule(id, nil)
end

-- ===================================================================
-- NORTHBOUND FORWARDING (PROTOCOL.md §2 netsrv_forward_data). Site-wide keys, a documented
-- exception:
--   forward:destinations         hash: name -> "channels|types" (what a write checks: one
--                                HGETALL of a handful of destinations, one EXISTS when none)
--   forward:{name}               hash: the destination (netsrv_forward_save)
--   forward:{name}:stream        stream: what was forwarded, capped at the destination's maxlen
--   forward:{name}:stats         hash: appended, trimmed
-- ===================================================================
local FORWARD_DESTINATIONS = 'forward:destinations'
local FORWARD_MAXLEN_MAX = 1000000

local function forward_name_of(key, fname)
  local name = string.match(key, '^forward:([%w_%.%-]+)$')
  if not name or #name > 64 or name == 'destinations' or name == 'names' then
    return nil, err('invalid key ' .. show(key) .. ': expected forward:{name}, name 1-64 of A-Za-z0-9_.- (' .. fname .. ')')
  end
  return name
end

-- Appends `fields` to the destination's stream, trims it to its cap and counts both.
local function forward_append(name, maxlen, fields)
  local stream = 'forward:' .. name .. ':stream'
  redis.call('XADD', stream, '*', unpack(fields))
  local trimmed = redis.call('XTRIM', stream, 'MAXLEN', '~', maxlen)
  local stats = 'forward:' .. name .. ':stats'
  redis.call('HINCRBY', stats, 'appended', 1)
  if trimmed > 0 then redis.call('HINCRBY', stats, 'trimmed', trimmed) end
end

-- Whether a "channels|types|maxlen" spec matches (ch_s, dtype).
local function forward_matches(spec, ch_s, dtype)
  local channels, types = string.match(spec, '^([^|]*)|([^|]*)|')
  if not channels then return false end
  if not string.find(types, dtype, 1, true) then return false end
  if channels == '*' then return true end
  for c in string.gmatch(channels, '[^,]+') do
    if c == ch_s then return true end
  end
  return false
end

-- The written points as a JSON object: numbers as numbers, other values as strings.
local function values_object(pids, points)
  local parts = {}
  for i, pid in ipairs(pids) do
    local v = points[pid]
    local n = tonumber(v)
    parts[i] = '"' .. pid .. '":' .. ((n and is_finite(n)) and format_number(n) or cjson.encode(v))
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

run_forwarding = function(ch_s, dtype, pids, points, ts)
  local all = redis.call('HGETALL', FORWARD_DESTINATIONS)
  local payload
  for i = 1, #all, 2 do
    local spec = all[i + 1]
    if forward_matches(spec, ch_s, dtype) then
      payload = payload or values_object(pids, points)
      local maxlen = tonumber(string.match(spec, '|(%d+)$')) or 10000
      forward_append(all[i], maxlen, { 'channel_id', ch_s, 'data_type', dtype, 'values', payload, 'ts', format_int(ts) })
    end
  end
end

-- -------------------------------------------------------------------
-- netsrv_forward_save:
--   FCALL netsrv_forward_save 1 forward:{name} <destination_json>  ->  OK
--   destination_json: {channels?: [ids] (absent or []: every channel), data_types?: ["T",..]
--                      (default all four), maxlen?: 1..1000000 (default 10000), enabled?}
-- -------------------------------------------------------------------
local function netsrv_forward_save(keys, args)
  if #keys ~= 1 or #args ~= 1 then
    return err('netsrv_forward_save expects 1 key (forward:{name}) and 1 argument (destination_json)')
  end
  local name, e = forward_name_of(keys[1], 'netsrv_forward_save')
  if not name then return e end
  local ok, d = pcall(cjson.decode, args[1])
  if not ok or type(d) ~= 'table' then return err('INVALID_PARAMETER destination_json: expected a JSON object (nothing saved)') end
  local function bad(msg) return err('INVALID_PARAMETER ' .. msg .. ' (nothing saved)') end
  local channels = {}
  if d.channels ~= nil and d.channels ~= cjson.null then
    if type(d.channels) ~= 'table' or #d.channels > 1000 then return bad('channels: expected up to 1000 channel ids') end
    for i, c in ipairs(d.channels) do
      if type(c) ~= 'number' or c % 1 ~= 0 or c < 1 or c > MAX_U32 then return bad('channels[' .. i .. ']: expected an integer 1..4294967295') end
      channels[i] = format_int(c)
      if not channel_known(channels[i]) then return bad('channels[' .. i .. ']: channel ' .. channels[i] .. ' not found') end
    end
  end
  local types = 'TSCA'
  if d.data_types ~= nil and d.data_types ~= cjson.null then
    if type(d.data_types) ~= 'table' or #d.data_types == 0 then return bad('data_types: expected a non-empty array of "T" "S" "C" "A"') end
    types = ''
    for _, t in ipairs(d.data_types) do
      if type(t) ~= 'string' or not string.match(t, '^[TSCA]$') then return bad('data_types: expected "T" "S" "C" "A"') end
      if not string.find(types, t, 1, true) then types = types .. t end
    end
  end
  local maxlen = given(d.maxlen, 10000)
  if type(maxlen) ~= 'number' or maxlen % 1 ~= 0 or maxlen < 1 or maxlen > FORWARD_MAXLEN_MAX then
    return bad('maxlen: expected an integer 1..' .. FORWARD_MAXLEN_MAX)
  end
  d.enabled = given(d.enabled, true)
  if type(d.enabled) ~= 'boolean' then return bad('enabled: expected true or false') end
  local chans = (#channels == 0) and '*' or table.concat(channels, ',')
  redis.call('DEL', keys[1])
  redis.call('SADD', 'forward:names', name)
  redis.call('HSET', keys[1], 'name', name, 'channels', chans, 'data_types', types,
    'maxlen', format_int(maxlen), 'enabled', d.enabled and '1' or '0')
  if d.enabled then
    redis.call('HSET', FORWARD_DESTINATIONS, name, chans .. '|' .. types .. '|' .. format_int(maxlen))
  else
    redis.call('HDEL', FORWARD_DESTINATIONS, name)
  end
  refresh_forward_hook()
  return redis.status_reply('OK')
end

-- -------------------------------------------------------------------
-- netsrv_forward_delete:  FCALL netsrv_forward_delete 1 forward:{name}  ->  1 / 0
--   The destination, its stream and its counters go.
-- -------------------------------------------------------------------
local function netsrv_forward_delete(keys, args)
  if #keys ~= 1 or #args ~= 0 then
    return err('netsrv_forward_delete expects 1 key (forward:{name}) and no arguments')
  end
  local name, e = forward_name_of(keys[1], 'netsrv_forward_delete')
  if not name then return e end
  redis.call('HDEL', FORWARD_DESTINATIONS, name)
  refresh_forward_hook()
  redis.call('SREM', 'forward:names', name)
  return redis.call('DEL', keys[1], 'forward:' .. name .. ':stream', 'forward:' .. name .. ':stats') > 0 and 1 or 0
end

-- -------------------------------------------------------------------
-- netsrv_forward_data:
--   FCALL netsrv_forward_data 1 forward:{name} <payload>  ->  appended (1)
--   Appends an arbitrary payload (a string, at most 64 KiB) to the destination's stream, with
--   the same cap and counters as forwarded writes.
-- -------------------------------------------------------------------
local function netsrv_forward_data(keys, args)
  if #keys ~= 1 or #args ~= 1 then
    return err('netsrv_forward_data expects 1 key (forward:{name}) and 1 argument (payload)')
  end
  local name, e = forward_name_of(keys[1], 'netsrv_forward_data')
  if not name then return e end
  if #args[1] > 65536 then return err('INVALID_PARAMETER payload: at most 65536 bytes') end
  local d = redis.call('HMGET', keys[1], 'maxlen', 'enabled')
  if not d[1] then return err('NOT_FOUND destination ' .. show(name) .. ' does not exist') end
  forward_append(name, tonumber(d[1]), { 'payload', args[1], 'ts', format_int(now_s()) })
  return 1
end

-- ---------------------------------------------------------------------------------------
-- SESSIONS (the gateway's logins, shared by every gateway on this Redis and kept across
-- restarts). A login is a family of refresh tokens; only SHA-1 hashes of tokens are kept.
--   auth:login:{family}   hash: user, token (hash of the one redeemable token), used (the
--                         hashes of the last USED_KEPT used ones), expires (ms), started (ms)
--   auth:logins           zset: family -> expires (the bound and the expiry sweep)
--   auth:logins:{user}    zset: family -> started (a user's logins, oldest first)
--   auth:users            zset: user -> logins held (who holds the most when the store is full)
--   auth:revocations      stream: family, until (ms) — every ended login, read by every gateway
-- ---------------------------------------------------------------------------------------
local LOGINS = 'auth:logins'
local LOGIN_USERS = 'auth:users'
local REVOCATIONS = 'auth:revocations'
local REVOCATIONS_MAX = 100000
-- Used token hashes a login remembers: one of them presented again is a reuse (the login is
-- revoked); any other unknown token of the family is refused without ending it (a family id
-- is readable in the access token, so it alone must not let anyone end a login).
local USED_KEPT = 8
-- An ended login's access tokens are refused this long (ms: the longest access ttl; its
-- refresh tokens are gone with it).
local REVOKE_FOR = 86400000
-- Expired logins removed per call (the rest at the next).
local SWEEP_MAX = 100

local function family_of(key, fname)
  local f = string.match(key or '', '^auth:login:([%w]+)$')
  if f == nil or #f > 64 then
    return nil, err(fname .. ' expects 1 key auth:login:{family} (family: 1-64 of A-Za-z0-9)')
  end
  return f
end

-- Forgets a login; `revoke` also writes it to auth:revocations (its access tokens end).
local function end_login(f, now, revoke)
  local key = 'auth:login:' .. f
  local user = redis.call('HGET', key, 'user')
  redis.call('DEL', key)
  redis.call('ZREM', LOGINS, f)
  if user then
    redis.call('ZREM', 'auth:logins:' .. user, f)
    if tonumber(redis.call('ZINCRBY', LOGIN_USERS, -1, user)) <= 0 then
      redis.call('ZREM', LOGIN_USERS, user)
    end
  end
  if revoke then
    redis.call('XADD', REVOCATIONS, 'MAXLEN', '~', REVOCATIONS_MAX, '*',
      'family', f, 'until', format_int(now + REVOKE_FOR))
  end
  return user ~= false and user ~= nil
end

local function sweep_logins(now)
  local expired = redis.call('ZRANGEBYSCORE', LOGINS, '-inf', format_int(now), 'LIMIT', 0, SWEEP_MAX)
  for _, f in ipairs(expired) do end_login(f, now, false) end
end

local function session_args(args, n, fname)
  if #args ~= n then return nil, err(fname .. ' expects ' .. n .. ' arguments') end
  local now = parse_uint(args[n - 1])
  local ttl = parse_uint(args[n])
  if now == nil or ttl == nil or ttl < 1 then
    return nil, err(fname .. ': <now_ms> and <ttl_ms> must be positive integers')
  end
  return now, ttl
end

-- auth_login:
--   FCALL auth_login 1 auth:login:{family} <user> <token> <max_per_user> <max_total> <now_ms> <ttl_ms>
--   -> the families of the logins ended to make room. Starts a login: past max_per_user the user's oldest login
--   ends; past max_total the oldest login of the user holding the most (one user's logins
--   never push out another's while that user holds fewer).
local function auth_login(keys, args)
  local f, e = family_of(keys[1], 'auth_login')
  if f == nil then return e end
  local now, ttl = session_args(args, 6, 'auth_login')
  if now == nil then return ttl end
  local user, token = args[1], args[2]
  local per_user, total = parse_uint(args[3]), parse_uint(args[4])
  if not short_string(user, 64, '^[%w_.@%-]+$') or not short_string(token, 1024) then
    return err('auth_login: invalid user or token')
  end
  if per_user == nil or per_user < 1 or total == nil or total < 1 then
    return err('auth_login: <max_per_user> and <max_total> must be positive integers')
  end
  if redis.call('EXISTS', keys[1]) == 1 then return err('auth_login: the family exists') end
  sweep_logins(now)
  local ended = {}
  local mine = 'auth:logins:' .. user
  while redis.call('ZCARD', mine) >= per_user do
    local oldest = redis.call('ZRANGE', mine, 0, 0)[1]
    end_login(oldest, now, true)
    ended[#ended + 1] = oldest
  end
  while redis.call('ZCARD', LOGINS) >= total do
    local most = redis.call('ZREVRANGE', LOGIN_USERS, 0, 0)[1]
    local oldest = most and redis.call('ZRANGE', 'auth:logins:' .. most, 0, 0)[1]
    if not oldest then break end
    end_login(oldest, now, true)
    ended[#ended + 1] = oldest
  end
  redis.call('HSET', keys[1], 'user', user, 'token', redis.sha1hex(token), 'used', '',
    'expires', format_int(now + ttl), 'started', format_int(now))
  redis.call('ZADD', LOGINS, format_int(now + ttl), f)
  redis.call('ZADD', mine, format_int(now), f)
  redis.call('ZINCRBY', LOGIN_USERS, 1, user)
  return ended
end

-- Whether `hash` is one of the login's used tokens.
local function was_used(used, hash)
  for u in string.gmatch(used or '', '%x+') do
    if u == hash then return true end
  end
  return false
end

-- auth_refresh:
--   FCALL auth_refresh 1 auth:login:{family} <token> <new_token> <now_ms> <ttl_ms>
--   -> {'ok', user} | {'unknown'} | {'expired'} | {'reused'}. Uses up <token> (the login's
--   one redeemable token) and makes <new_token> the next; a used token presented again
--   ends the login (two parties hold it) and revokes its access tokens.
local function auth_refresh(keys, args)
  local f, e = family_of(keys[1], 'auth_refresh')
  if f == nil then return e end
  local now, ttl = session_args(args, 4, 'auth_refresh')
  if now == nil then return ttl end
  if not short_string(args[1], 1024) or not short_string(args[2], 1024) then
    return err('auth_refresh: invalid token')
  end
  local h = redis.call('HMGET', keys[1], 'user', 'token', 'used', 'expires')
  if not h[1] then return { 'unknown' } end
  local hash = redis.sha1hex(args[1])
  if hash ~= h[2] then
    if was_used(h[3], hash) then
      end_login(f, now, true)
      return { 'reused' }
    end
    return { 'unknown' }
  end
  if tonumber(h[4]) <= now then
    end_login(f, now, false)
    return { 'expired' }
  end
  local used = {}
  for u in string.gmatch(h[3] or '', '%x+') do used[#used + 1] = u end
  used[#used + 1] = hash
  while #used > USED_KEPT do table.remove(used, 1) end
  redis.call('HSET', keys[1], 'token', redis.sha1hex(args[2]), 'used', table.concat(used, ' '),
    'expires', format_int(now + ttl))
  redis.call('ZADD', LOGINS, format_int(now + ttl), f)
  return { 'ok', h[1] }
end

-- auth_logout:
--   FCALL auth_logout 1 auth:login:{family} [<token>] <now_ms>  ->  1 when a live login ended.
--   With <token> (a refresh token of the login: its current one or a used one) or without
--   (the caller proved the login with its access token). The login's access tokens are
--   revoked either way (an already ended login stays revoked).
local function auth_logout(keys, args)
  local f, e = family_of(keys[1], 'auth_logout')
  if f == nil then return e end
  if #args < 1 or #args > 2 then return err('auth_logout expects [<token>] <now_ms>') end
  local now = parse_uint(args[#args])
  if now == nil then return err('auth_logout: <now_ms> must be a non-negative integer') end
  local h = redis.call('HMGET', keys[1], 'token', 'used')
  if #args == 2 then
    if not short_string(args[1], 1024) then return err('auth_logout: invalid token') end
    local hash = redis.sha1hex(args[1])
    if not h[1] or (hash ~= h[1] and not was_used(h[2], hash)) then return 0 end
  end
  if not h[1] then
    -- Not live (ended, expired, unknown): revoked again all the same, answering 0.
    end_login(f, now, true)
    return 0
  end
  end_login(f, now, true)
  return 1
end

redis.register_function{
  function_name = 'voltage_version',
  callback = voltage_version,
  flags = { 'no-writes' },
}

redis.register_function{
  function_name = 'comsrv_write_data',
  callback = comsrv_write_data,
}

redis.register_function{
  function_name = 'voltage_rebuild_hooks',
  callback = voltage_rebuild_hooks,
}

redis.register_function{
  function_name = 'alarmsrv_ack',
  callback = alarmsrv_ack,
}

redis.register_function{
  function_name = 'alarmsrv_check',
  callback = alarmsrv_check,
}

redis.register_function{
  function_name = 'alarmsrv_rule_save',
  callback = alarmsrv_rule_save,
}

redis.register_function{
  function_name = 'alarmsrv_rule_delete',
  callback = alarmsrv_rule_delete,
}

redis.register_function{
  function_name = 'modsrv_model_save',
  callback = modsrv_model_save,
}

redis.register_function{
  function_name = 'modsrv_model_delete',
  callback = modsrv_model_delete,
}

redis.register_function{
  function_name = 'modsrv_calculate',
  callback = modsrv_calculate,
}

redis.register_function{
  function_name = 'rulesrv_rule_save',
  callback = rulesrv_rule_save,
}

redis.register_function{
  function_name = 'rulesrv_rule_delete',
  callback = rulesrv_rule_delete,
}

redis.register_function{
  function_name = 'rulesrv_evaluate',
  callback = rulesrv_evaluate,
}

redis.register_function{
  function_name = 'netsrv_forward_save',
  callback = netsrv_forward_save,
}

redis.register_function{
  function_name = 'netsrv_forward_delete',
  callback = netsrv_forward_delete,
}

redis.register_function{
  function_name = 'netsrv_forward_data',
  callback = netsrv_forward_data,
}

redis.register_function{
  function_name = 'control_submit',
  callback = control_submit,
}

redis.register_function{
  function_name = 'control_report',
  callback = control_report,
}

redis.register_function{
  function_name = 'control_expire',
  callback = control_expire,
}

redis.register_function{ function_name = 'control_expire_all', callback = control_expire_all }
redis.register_function{ function_name = 'control_acks_take', callback = control_acks_take }
redis.register_function{ function_name = 'control_acks_return', callback = control_acks_return }
redis.register_function{ function_name = 'netsrv_client_claim', callback = netsrv_client_claim }
redis.register_function{ function_name = 'netsrv_client_release', callback = netsrv_client_release }
redis.register_function{ function_name = 'netsrv_client_renew', callback = netsrv_client_renew }
redis.register_function{ function_name = 'auth_login', callback = auth_login }
redis.register_function{ function_name = 'auth_refresh', callback = auth_refresh }
redis.register_function{ function_name = 'auth_logout', callback = auth_logout }

-- allow-oom: the gateway's pull must keep working when Redis hits maxmemory;
-- the only writes it can make are the tiny epoch/seq repairs.
redis.register_function{
  function_name = 'netsrv_collect_data',
  callback = netsrv_collect_data,
  flags = { 'allow-oom' },
}
