-- wrk script of the benchmark: POST the body in $BENCH_BODY to the URL given to wrk.
-- With $BENCH_TOKENS (a file, one JWT a line), every request carries the next unused
-- token as "Authorization: Bearer ...", as an EHR sends a fresh signed token per call.
-- Run with -t1 (one wrk thread); done() prints one line "BENCH_JSON {...}" for run.py.

local body_file = os.getenv("BENCH_BODY")
local tokens_file = os.getenv("BENCH_TOKENS")

function init(args)
  local f = assert(io.open(body_file, "rb"))
  body = f:read("*a")
  f:close()
  headers = {["Content-Type"] = "application/json", ["Accept"] = "application/json"}
  static = wrk.format("POST", nil, headers, body)
  tokens = nil
  if tokens_file ~= nil and tokens_file ~= "" then
    tokens = {}
    for line in io.lines(tokens_file) do
      if #line > 0 then table.insert(tokens, line) end
    end
    idx = 0
  end
end

function request()
  if tokens == nil then
    return static
  end
  idx = idx + 1
  -- past the last token the last one is sent again: the service refuses the replay (401),
  -- which shows up as errors, so run.py always makes more tokens than can be used
  local token = tokens[idx] or tokens[#tokens]
  local h = {["Content-Type"] = "application/json", ["Accept"] = "application/json",
             ["Authorization"] = "Bearer " .. token}
  return wrk.format("POST", nil, h, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
