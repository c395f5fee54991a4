-- wrk script: every request carries the same valid bearer token (as real clients
-- reuse theirs). Usage: TOKEN=... wrk -s load-tests/auth.lua http://127.0.0.1:8080/echo/secure
local token = os.getenv("TOKEN")
if token == nil or token == "" then
  error("set TOKEN to a valid bearer token")
end
wrk.headers["Authorization"] = "Bearer " .. token
