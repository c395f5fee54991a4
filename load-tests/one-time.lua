-- wrk script: each request carries the next token of the file in $TOKENS (one per
-- line), so every one-time token is used once; past the end, tokens repeat (and are
-- then replays, counted as non-2xx). Run with one wrk thread (-t1).
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do
  tokens[#tokens + 1] = line
end
local i = 0
request = function()
  i = i + 1
  local t = tokens[(i - 1) % #tokens + 1]
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. t })
end
