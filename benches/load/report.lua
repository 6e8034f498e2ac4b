-- wrk script for the collector: POSTs a valid 3-PoP report with a fresh probe id per request.
-- usage: wrk -t2 -c32 -d10s -s benches/load/report.lua http://127.0.0.1:PORT/v1/report
local n = 0
request = function()
  n = n + 1
  local id = string.format("wrk%06d%08d", math.random(0, 999999), n)
  local body = '{"probe_id":"' .. id .. '","results":[{"pop":"ams","rtt_ms":12.5,"ok":true},' ..
               '{"pop":"iad","rtt_ms":80.25,"ok":true},{"pop":"sin","ok":false}]}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
