-- wrk script: POST the benchmark's hook requests in rotation, print a JSON summary.
-- Usage: wrk -t2 -c16 -d20s -s wrk_post.lua http://127.0.0.1:PORT -- MANIFEST
-- MANIFEST has one request per line: "<path>\t<Accept-Language>\t<body file>".

local requests = {}
local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local manifest = assert(io.open(args[1], "r"))
  for line in manifest:lines() do
    local path, lang, file = line:match("^([^\t]+)\t([^\t]+)\t(.+)$")
    if path then
      local f = assert(io.open(file, "rb"))
      local body = f:read("*a")
      f:close()
      local headers = {["Content-Type"] = "application/json", ["Accept-Language"] = lang}
      table.insert(requests, wrk.format("POST", path, headers, body))
    end
  end
  manifest:close()
  counter = (id or 1) - 1
  non200 = 0
end

function request()
  counter = counter + 1
  return requests[(counter % #requests) + 1]
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  end
end

function done(summary, latency, requests_)
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("non200") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "non200": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
    summary.requests, summary.duration, summary.bytes, bad,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
