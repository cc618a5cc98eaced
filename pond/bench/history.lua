-- wrk script: POST conversations.history as a rotating set of pond users.
-- Usage: wrk -t2 -c64 -d10s -s pond/bench/history.lua http://127.0.0.1:9090/api/conversations.history
wrk.method = "POST"
wrk.body = "channel=C000000&limit=20"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

local counter = 0
request = function()
  counter = counter + 1
  wrk.headers["Authorization"] = "Bearer xoxp-pond-" .. (counter % 1000)
  return wrk.format()
end
