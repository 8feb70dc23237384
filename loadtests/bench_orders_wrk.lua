-- bench_orders_wrk.lua: wrk script for loadtests/bench_orders.py.
--
-- Cycles through pre-signed requests read from a file (one per line:
-- METHOD \t TARGET \t API-KEY \t CONTENT-TYPE \t BODY), each thread from its own
-- offset, and prints one line "BENCH_JSON {...}" with the run's figures.
--   wrk -t2 -c64 -d10s -s bench_orders_wrk.lua http://127.0.0.1:3000 -- requests.tsv
-- Environment:
--   BENCH_DELAY_MS=N   each connection waits a random think time, exponential with mean N ms, after a
--                      response before its next request (pacing: the sends form a Poisson stream)
--   BENCH_COUNT_CODES=1 count '"code":' members in response bodies (per-order errors inside batches)

local requests = {}
local counter = 0
local codes = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  for line in io.lines(args[1]) do
    local method, target, key, ctype, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    if method then
      local headers = { ["X-MBX-APIKEY"] = key }
      if ctype ~= "" then headers["Content-Type"] = ctype end
      if body == "" then body = nil end
      requests[#requests + 1] = wrk.format(method, target, headers, body)
    end
  end
  if #requests == 0 then
    error("no request in " .. args[1])
  end
  counter = ((tid or 1) * 7919) % #requests
  math.randomseed((tid or 1) * 7919)  -- each thread its own think times
end

function request()
  counter = counter + 1
  if counter > #requests then counter = 1 end
  return requests[counter]
end

local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if delay_ms > 0 then
  -- Exponential think times (mean delay_ms): the connections' sends form a Poisson stream instead of
  -- bursts that stay in step from the common start.
  function delay()
    return -delay_ms * math.log(1 - math.random())
  end
end

if os.getenv("BENCH_COUNT_CODES") == "1" then
  function response(status, headers, body)
    local _, n = string.gsub(body, '"code":', "")
    codes = codes + n
  end
end

function done(summary, latency, requests)
  local total_codes = 0
  for _, thread in ipairs(threads) do
    total_codes = total_codes + (thread:get("codes") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "status_errors": %d, "timeouts": %d, "codes_in_bodies": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    total_codes, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
