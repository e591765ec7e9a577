-- wrk script for benchmarks/run.py and benchmarks/capacity.py: cycles through the requests listed one per
-- line in the file given after `--`, and prints one JSON line of figures at the end (latencies in
-- microseconds). A line is a GET path, or `PATCH path<TAB>body` where each @NB@ of the body becomes a
-- number that changes at every request (a new bed count).
--
--   wrk -t1 -c8 -d3s -s benchmarks/paths.lua http://127.0.0.1:PORT -- paths.txt

local paths = {}
local i = 0

function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    if #line > 0 then paths[#paths + 1] = line end
  end
  f:close()
  -- each connection thread starts at a different place in the list
  i = math.random(#paths) - 1
end

local n = 0

function request()
  i = i % #paths + 1
  local line = paths[i]
  if line:sub(1, 6) == "PATCH " then
    local tab = line:find("\t", 7, true)
    n = n + 1
    local body = line:sub(tab + 1):gsub("@NB@", tostring(10 + n % 1000))
    return wrk.format("PATCH", line:sub(7, tab - 1),
                      {["Accept"] = "application/fhir+json", ["Content-Type"] = "application/fhir+json"}, body)
  end
  return wrk.format("GET", line, {["Accept"] = "application/fhir+json"})
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"non2xx":%d,"socket_errors":%d,"bytes":%d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    e.status, e.connect + e.read + e.write + e.timeout, summary.bytes))
end
