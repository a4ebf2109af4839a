"""wrk runs for bench/read_bench.py: the Lua scripts of each endpoint, and parsing wrk's output.

Every script seeds Lua's generator with a fixed seed plus the thread's number, so two runs of
the benchmark send the same requests in the same order.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from app.services import seed as demo

# Shared by every script: a thread number (set in setup) and the request headers with JSON.
_PRELUDE = """
local counter = 0
local thread_number = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function init(args)
  thread_number = tid
  math.randomseed({seed} + 7919 * tid)
  json_headers = {{}}
  for k, v in pairs(wrk.headers) do json_headers[k] = v end
  json_headers["Content-Type"] = "application/json"
end
"""

_BY_ID = """
request = function()
  return wrk.format("GET", "/products/" .. math.random(1, {products}))
end
"""

_WORDS = "local words = {{{words}}}\nlocal tags = {{{tags}}}\n"

_CREATE = """
local n = 0
request = function()
  n = n + 1
  local name = words[math.random(#words)] .. " " .. words[math.random(#words)] .. " "
    .. words[math.random(#words)]
  local t1, t2 = tags[math.random(#tags)], tags[math.random(#tags)]
  local body = string.format(
    '{{"sku":"{prefix}-%d-%d","name":"%s","description":"A %s made for benchmarks.",'
    .. '"price":"%d.%02d","currency":"EUR","stock":%d,"status":"active",'
    .. '"category_id":%d,"tags":["%s","%s"],"attributes":{{"color":"red","weight_g":%d}}}}',
    thread_number, n, name, name, math.random(1, 500), math.random(0, 99),
    math.random(0, 500), math.random({min_category}, {max_category}), t1, t2,
    math.random(50, 5000))
  return wrk.format("POST", "/products", json_headers, body)
end
"""

# Each thread patches its own share of (id, version) pairs in order, once per lap; a lap
# later every one of them is one version further, so If-Match always names the current one.
_UPDATE = """
local targets = {{{pairs}}}
local i = 0
request = function()
  local slot = i * {threads} + thread_number
  local lap = math.floor(slot / #targets)
  local pair = targets[(slot % #targets) + 1]
  i = i + 1
  local headers = {{}}
  for k, v in pairs(json_headers) do headers[k] = v end
  headers["If-Match"] = '"' .. (pair[2] + lap) .. '"'
  local body = string.format('{{"name":"%s %s","price":"%d.%02d"}}',
    words[math.random(#words)], words[math.random(#words)],
    math.random(1, 500), math.random(0, 99))
  return wrk.format("PATCH", "/products/" .. pair[1], headers, body)
end
"""

_STOCK = """
request = function()
  local body = string.format('{{"delta":%d,"reason":"restock"}}', math.random(1, 5))
  return wrk.format("POST", "/products/" .. math.random(1, {products}) .. "/stock",
    json_headers, body)
end
"""

THREADS = 2


def vocabulary() -> tuple[list[str], list[str]]:
    """Words of the demo catalog (app.services.seed) and its tags."""
    words = [*demo.ADJECTIVES, *demo.MATERIALS, *demo.BRANDS]
    return words, list(demo.TAGS)


def _lua_strings(values: list[str]) -> str:
    return ",".join(f'"{value}"' for value in values)


def by_id_script(seed: int, products: int) -> str:
    return _PRELUDE.format(seed=seed) + _BY_ID.format(products=products)


def create_script(seed: int, prefix: str, categories: tuple[int, int]) -> str:
    words, tags = vocabulary()
    return (
        _PRELUDE.format(seed=seed)
        + _WORDS.format(words=_lua_strings(words), tags=_lua_strings(tags))
        + _CREATE.format(prefix=prefix, min_category=categories[0], max_category=categories[1])
    )


def update_script(seed: int, targets: list[tuple[int, int]]) -> str:
    """PATCH with If-Match over `targets`, (id, current version) pairs none else changes."""
    words, tags = vocabulary()
    pairs = ",".join(f"{{{product_id},{version}}}" for product_id, version in targets)
    return (
        _PRELUDE.format(seed=seed)
        + _WORDS.format(words=_lua_strings(words), tags=_lua_strings(tags))
        + _UPDATE.format(pairs=pairs, threads=THREADS)
    )


def stock_script(seed: int, products: int) -> str:
    return _PRELUDE.format(seed=seed) + _STOCK.format(products=products)


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    failed: int  # non-2xx/3xx responses plus socket errors


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _milliseconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse(output: str) -> WrkResult:
    """What a `wrk --latency` run printed."""
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (done and rps and p50 and p99):
        raise ValueError(f"unexpected wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    failed = int(non_2xx.group(1)) if non_2xx else 0
    if sockets:
        failed += sum(int(g) for g in sockets.groups())
    return WrkResult(
        requests=int(done.group(1)),
        seconds=_milliseconds(done.group(2) + done.group(3)) / 1000,
        rps=float(rps.group(1)),
        p50_ms=_milliseconds(p50.group(1)),
        p99_ms=_milliseconds(p99.group(1)),
        failed=failed,
    )


def run(
    url: str, *, header: str, duration: int, connections: int, script: Path | None
) -> WrkResult:
    command = [
        "wrk",
        f"-t{THREADS}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        "10s",
        "-H",
        header,
    ]
    if script is not None:
        command += ["-s", str(script)]
    completed = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=duration + 60
    )
    return parse(completed.stdout)
