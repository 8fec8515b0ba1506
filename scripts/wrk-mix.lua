-- wrk script: the challenge's traffic mix against one API address, for quick A/B measurements.
-- 22 debits : 11 credits : 1 statement, client 1-5 at random, valor 1-10000, descricao of 10
-- random alphanumerics. Any status other than 200 or 422 (a refused debit) is counted and
-- printed as unexpected at the end. The load tester (load-test/) is the full, checking tool;
-- this exists so wrk's numbers can be set beside it.
--
--   wrk -t1 -c32 -d10s --latency -s scripts/wrk-mix.lua http://127.0.0.1:9999

local alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
local threads = {}
local counter = 0
unexpected = 0

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + id)
end

local function description()
  local chars = {}
  for i = 1, 10 do
    local k = math.random(1, #alphabet)
    chars[i] = alphabet:sub(k, k)
  end
  return table.concat(chars)
end

function request()
  counter = counter + 1
  local slot = counter % 34
  local client = math.random(1, 5)
  if slot == 33 then
    return wrk.format("GET", "/clientes/" .. client .. "/extrato")
  end
  local tipo = slot < 22 and "d" or "c"
  local body = string.format('{"valor":%d,"tipo":"%s","descricao":"%s"}',
    math.random(1, 10000), tipo, description())
  return wrk.format("POST", "/clientes/" .. client .. "/transacoes",
    { ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  if status ~= 200 and status ~= 422 then
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("unexpected")
  end
  io.write(string.format("unexpected statuses: %d\n", total))
end
