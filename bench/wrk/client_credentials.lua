-- wrk script of `make bench` (scripts/bench-oidc.sh): client_credentials grants.
-- wrk ... -s bench/wrk/client_credentials.lua URL -- "Basic <base64(id:secret)>"
-- The path comes from the URL (Portcullis /oauth2/token, oidc-provider /token).
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Authorization"] = args[1]
  wrk.body = "grant_type=client_credentials&scope=api"
end

-- One JSON line for the script to read; latency is in microseconds. No response() hook: it
-- would run Lua for every response. errors.status counts responses with a status above 399.
function done(s, lat, req)
  io.write(string.format(
    '{"requests":%d,"rps":%.0f,"p50_ms":%.2f,"p99_ms":%.2f,"non2xx":%d,"socket_errors":%d}\n',
    s.requests, s.requests / (s.duration / 1e6), lat:percentile(50) / 1e3, lat:percentile(99) / 1e3,
    s.errors.status, s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout))
end
