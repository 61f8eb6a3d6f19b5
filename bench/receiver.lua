-- Sends pre-signed webhook requests, each once: thread i takes every n-th line of the file.
-- Line format: <Stripe-Signature header value><TAB><JSON body>.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path, count = args[1], tonumber(args[2])
  pace_ms = tonumber(args[3] or "0")
  requests, position = {}, 0
  local line_no = 0
  for line in io.lines(path) do
    if line_no % count == index then
      local tab = string.find(line, "\t", 1, true)
      table.insert(requests, wrk.format("POST", nil, {
        ["Content-Type"] = "application/json",
        ["Stripe-Signature"] = string.sub(line, 1, tab - 1),
      }, string.sub(line, tab + 1)))
    end
    line_no = line_no + 1
  end
end

function request()
  position = position % #requests + 1
  return requests[position]
end

function delay()
  return pace_ms
end
