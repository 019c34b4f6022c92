-- wrk script: POSTs pre-built bodies (files body-0 … body-N-1 in $BODIES) in
-- a cycle to $WPATH with $AUTH; prints one WRK line with the counts and
-- latency percentiles for bench/ingest_wrk.sh.
local dir = os.getenv("BODIES")
local n = tonumber(os.getenv("NBODIES"))
local path = os.getenv("WPATH")
local headers = { ["Authorization"] = os.getenv("AUTH"), ["Content-Type"] = os.getenv("CTYPE") or "text/plain",
                  ["x-arc-database"] = "bench" }
local bodies = {}
local i = 0

function init(args)
  for k = 0, n - 1 do
    local f = assert(io.open(dir .. "/body-" .. k, "rb"))
    bodies[k] = f:read("*a")
    f:close()
  end
end

function request()
  i = (i + 1) % n
  return wrk.format("POST", path, headers, bodies[i])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK requests=%d non2xx=%d socket_errors=%d p50_ms=%.2f p99_ms=%.2f\n", summary.requests, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
