-- Sends pre-signed webhook requests, each exactly once, then stops (bench/e2e.py).
--
-- Thread i takes every n-th record of the file. A connection claims a record in delay(),
-- before it waits for its turn, and sends it in request(), so no record goes out twice however
-- the connections interleave; a connection with nothing left to claim idles until the stop.
-- Once every record of a thread is answered, the thread appends its index to the done file
-- and stops; bench/e2e.py interrupts wrk when all threads have (wrk itself would sleep on for
-- its whole -d duration, which is only the bound).
--
-- Record format: header lines "Name: value\n", byte 31, the raw body, byte 30. JSON text never
-- holds either control byte unescaped, so bodies are sent byte for byte as they were signed.
-- Arguments: <file> <threads> <offered requests/s in all, 0 for as fast as possible> <done file>
local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } e2e_timespec;
int clock_gettime(int clock_id, e2e_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local IDLE_MS = 3600 * 1000

local counter = 0

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
end

local function now_ms()
  local now = ffi.new("e2e_timespec")
  ffi.C.clock_gettime(CLOCK_MONOTONIC, now)
  return tonumber(now.tv_sec) * 1000 + tonumber(now.tv_nsec) / 1e6
end

function init(args)
  local path, threads, rate = args[1], tonumber(args[2]), tonumber(args[3])
  done_path = args[4]
  -- Each thread offers its share of the rate: record k is due k intervals after the first.
  interval_ms = rate > 0 and threads * 1000 / rate or 0
  requests, claimed, sent, answered, finished = {}, 0, 0, 0, false
  first_ms = nil
  -- What request() gives when it is called without a claim (wrk's own check of the script
  -- at start, or a resend after a write error): never a webhook.
  filler = wrk.format("GET", "/healthz")
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  local record_no = 0
  for head, body in string.gmatch(data, "([^\31\30]*)\31([^\30]*)\30") do
    if record_no % threads == index then
      local headers = {}
      for name, value in string.gmatch(head, "([^:\n]+): ([^\n]*)\n") do
        headers[name] = value
      end
      table.insert(requests, wrk.format("POST", nil, headers, body))
    end
    record_no = record_no + 1
  end
end

local function finish()
  if finished then
    return
  end
  finished = true
  local file = assert(io.open(done_path, "a"))
  file:write(index, "\n")
  file:close()
  wrk.thread:stop()
end

function delay()
  if claimed >= #requests then
    if answered >= #requests then
      finish()
    end
    return IDLE_MS
  end
  claimed = claimed + 1
  if interval_ms == 0 then
    return 0
  end
  first_ms = first_ms or now_ms()
  local due_ms = first_ms + (claimed - 1) * interval_ms
  return math.max(0, math.floor(due_ms - now_ms()))
end

function request()
  if sent >= claimed then
    return filler
  end
  sent = sent + 1
  return requests[sent]
end

function response(status, headers, body)
  answered = answered + 1
  if answered >= #requests then
    finish()
  end
end
