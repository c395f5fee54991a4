-- wrk script: each request carries the next token of the file in $TOKENS (one per
-- line), cycling; each wrk thread starts at its own offset so threads do not send the
-- same token at the same time. Usage:
-- TOKENS=tokens.txt wrk -t2 -c64 -s load-tests/tokens.lua http://127.0.0.1:8080/secure
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

local tokens, i = {}, 0
function init(args)
  for line in io.lines(os.getenv("TOKENS")) do
    tokens[#tokens + 1] = "Bearer " .. line
  end
  if #tokens == 0 then
    error("no tokens in $TOKENS")
  end
  i = ((id or 1) - 1) * 4999 % #tokens
end

function request()
  i = i % #tokens + 1
  return wrk.format("GET", nil, { ["Authorization"] = tokens[i] })
end
