"""Loopback load on the emulator's phone lookup, measured with `wrk`.

    python -m postscript_audience_lab.emulator.postscript.loadtest [--subscribers 100000]
        [--duration 10] [--connections 16] [--json] [--check]

Seeds the subscribers, starts `pslab emulator --rate-limit 0` as a separate
process, drives `GET /api/v2/subscribers?phone_number__eq=…` with a different
seeded phone on every request, and prints requests/s and latency percentiles.
`--check` exits 1 when the emulator's target (docs/design/emulator.md: >= 3,000 req/s,
p99 < 20 ms) is missed. Needs `wrk` on PATH (Debian: `apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from postscript_audience_lab.emulator.postscript.config import DEFAULT_SECRET_KEY

__all__ = ["TARGET_RPS", "LoadResult", "main", "parse_wrk", "run"]

TARGET_RPS = 3000.0
TARGET_P99_MS = 20.0
FIRST_PHONE = 5_550_000_000  # seeded phones are +1 followed by FIRST_PHONE + i

_LUA = """
wrk.headers["Authorization"] = "Bearer {key}"
local count = {count}
local i = 0
request = function()
  i = (i + 7919) % count
  return wrk.format("GET", "/api/v2/subscribers?phone_number__eq=%2B1" .. ({first} + i))
end
"""


@dataclass
class LoadResult:
    subscribers: int
    duration_s: int
    connections: int
    requests: int
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int  # socket errors plus non-2xx answers

    @property
    def meets_target(self) -> bool:
        return self.requests_per_s >= TARGET_RPS and self.p99_ms < TARGET_P99_MS and not self.errors


def _milliseconds(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(output: str) -> dict[str, float]:
    """requests, requests/s, percentiles (ms) and errors from `wrk --latency` output."""
    numbers: dict[str, float] = {"errors": 0.0}
    for label in ("50", "90", "99"):
        found = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
        if found is None:
            raise ValueError(f"wrk printed no {label}% latency; was --latency given?")
        numbers[f"p{label}_ms"] = _milliseconds(*found.groups())
    total = re.search(r"(\d+) requests in", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if total is None or rate is None:
        raise ValueError("wrk printed no request totals")
    numbers["requests"] = float(total.group(1))
    numbers["requests_per_s"] = float(rate.group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    numbers["errors"] += float(non_2xx.group(1)) if non_2xx else 0.0
    numbers["errors"] += sum(float(n) for n in socket.groups()) if socket else 0.0
    return numbers


def _start_emulator(seed_file: Path) -> tuple[subprocess.Popen[str], str]:
    pslab = shutil.which("pslab")
    program = [pslab] if pslab else [sys.executable, "-c", "from emulator.cli import app; app()"]
    process = subprocess.Popen(  # noqa: S603 - our own program and fixed arguments
        [*program, "emulator", "--rate-limit", "0", "--port", "0", "--seed", str(seed_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    with ThreadPoolExecutor(1) as pool:
        line = pool.submit(process.stdout.readline).result(timeout=300)
    found = re.search(r"http://\S+:\d+", line)
    if found is None:
        process.kill()
        raise RuntimeError(f"the emulator did not start (it printed {line!r})")
    return process, found.group(0)


def run(subscribers: int, duration_s: int, connections: int) -> LoadResult:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise FileNotFoundError(
            "wrk is not on PATH; install it (Debian/Ubuntu: apt-get install wrk) and run again"
        )
    with tempfile.TemporaryDirectory() as scratch:
        seed_file = Path(scratch, "seed.json")
        phones = [{"phone_number": f"+1{FIRST_PHONE + i}"} for i in range(subscribers)]
        seed_file.write_text(json.dumps({"subscribers": phones}))
        script = Path(scratch, "phones.lua")
        script.write_text(_LUA.format(key=DEFAULT_SECRET_KEY, count=subscribers, first=FIRST_PHONE))
        process, base_url = _start_emulator(seed_file)
        try:
            probe = httpx.get(
                f"{base_url}/api/v2/subscribers",
                params={"phone_number__eq": f"+1{FIRST_PHONE + subscribers - 1}"},
                headers={"Authorization": f"Bearer {DEFAULT_SECRET_KEY}"},
            )
            if len(probe.json()["subscribers"]) != 1:
                raise RuntimeError(f"the seeded phone was not found: {probe.text[:200]}")
            common = [wrk, "-t1", f"-c{connections}", "-s", str(script), "--latency", base_url]
            subprocess.run([*common[:1], "-d2s", *common[1:]], capture_output=True, check=True)  # noqa: S603 - warm-up
            measured = subprocess.run(  # noqa: S603 - fixed arguments
                [*common[:1], f"-d{duration_s}s", *common[1:]],
                capture_output=True,
                text=True,
                check=True,
            )
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
    numbers = parse_wrk(measured.stdout)
    return LoadResult(
        subscribers=subscribers,
        duration_s=duration_s,
        connections=connections,
        requests=int(numbers["requests"]),
        requests_per_s=numbers["requests_per_s"],
        p50_ms=numbers["p50_ms"],
        p90_ms=numbers["p90_ms"],
        p99_ms=numbers["p99_ms"],
        errors=int(numbers["errors"]),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds of measured load")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args(argv)
    try:
        result = run(args.subscribers, args.duration, args.connections)
    except FileNotFoundError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**asdict(result), "meets_target": result.meets_target}))
    else:
        print(
            f"GET /api/v2/subscribers?phone_number__eq=… with {result.subscribers:,} subscribers, "
            f"{result.connections} connections, {result.duration_s} s, rate limit off:\n"
            f"  {result.requests_per_s:,.0f} requests/s ({result.requests:,} requests, "
            f"{result.errors} errors)\n"
            f"  latency p50 {result.p50_ms:.2f} ms, p90 {result.p90_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms\n"
            f"  target >= {TARGET_RPS:,.0f} requests/s with p99 < {TARGET_P99_MS:.0f} ms: "
            f"{'met' if result.meets_target else 'MISSED'}"
        )
    return 1 if args.check and not result.meets_target else 0


if __name__ == "__main__":
    sys.exit(main())
