"""The load benchmark's reading of wrk's output, and its message when wrk is missing."""

from __future__ import annotations

import shutil

import pytest

from postscript_audience_lab.emulator.postscript import loadtest

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8799
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.19ms    1.42ms  28.07ms   86.29%
    Req/Sec     5.26k     1.30k    6.95k    61.00%
  Latency Distribution
     50%  812.00us
     75%    2.84ms
     90%    3.67ms
     99%    1.02s
  52437 requests in 10.02s, 25.90MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   5232.86
Transfer/sec:      2.58MB
"""


def test_wrk_output_gives_rate_percentiles_in_ms_and_errors() -> None:
    numbers = loadtest.parse_wrk(WRK_OUTPUT)
    assert numbers == {
        "p50_ms": 0.812,
        "p90_ms": 3.67,
        "p99_ms": 1020.0,
        "requests": 52437.0,
        "requests_per_s": 5232.86,
        "errors": 7.0,
    }


def test_output_without_latency_percentiles_is_refused() -> None:
    with pytest.raises(ValueError, match="--latency"):
        loadtest.parse_wrk("Requests/sec: 1.0\n")


def test_a_missing_wrk_is_reported_in_one_sentence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert loadtest.main(["--subscribers", "10"]) == 2
    assert "wrk is not on PATH; install it" in capsys.readouterr().err
