"""`pslab serve --shops FILE` as an operator runs it (docs/design/service.md#many-shops): two
shops of one `pslab emulator --shops`, each served under its own prefix with its own keys."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import LOOPBACK_URL, PSLAB, read_line, running_emulator, stop, unwrapped

pytestmark = pytest.mark.slow

PHONE = "+15555550100"
EMULATOR_SHOPS = {
    "shops": [
        {"id": "shop_a", "secret_key": "sk_alpha_Recognisable0Key"},
        {"id": "shop_b", "secret_key": "sk_beta_Recognisable1Key"},
    ],
    "partners": [],
}
ENV = {
    "ALPHA_KEY": "sk_alpha_Recognisable0Key",
    "ALPHA_WRITE_KEY": "wk_alpha_Recognisable2",
    "BETA_SHARED": "shh_beta_Recognisable3",
}
BETA_WRITE_KEY = "wk_beta_Recognisable4"  # from a file, as the beta key is
SHOPS_TOML = """
[shops.alpha]
secret_key_env = "ALPHA_KEY"
write_key_env = "ALPHA_WRITE_KEY"

[shops.beta]
secret_key_file = "beta.key"
write_key_file = "beta.write"
shared_secret_env = "BETA_SHARED"
"""


@pytest.fixture
def emulator_url(tmp_path: Path) -> Iterator[str]:
    shops = tmp_path / "emulator-shops.json"
    shops.write_text(json.dumps(EMULATOR_SHOPS))
    with running_emulator("--shops", str(shops), "--rate-limit", "0") as (base_url, _):
        for shop in ("shop_a", "shop_b"):
            body = {"shop": shop, "subscribers": [{"phone_number": PHONE}]}
            httpx.post(f"{base_url}/_emulator/subscribers", json=body).raise_for_status()
        yield base_url


def write_shops(folder: Path, beta_key: str = "sk_beta_Recognisable1Key") -> Path:
    (folder / "beta.key").write_text(beta_key + "\n")
    (folder / "beta.write").write_text(BETA_WRITE_KEY + "\n")
    path = folder / "shops.toml"
    path.write_text(SHOPS_TOML)
    return path


def serve_args(shops: Path, state_dir: Path, emulator_url: str) -> list[str]:
    return [*PSLAB, "serve", "--port", "0", "--base-url", emulator_url, "--shops", str(shops),
            "--state-dir", str(state_dir)]  # fmt: skip


def event(audience: str) -> dict[str, Any]:
    return {
        "type": "identify",
        "messageId": f"m-{audience}",
        "timestamp": "2026-01-01T00:00:00Z",
        "traits": {audience: True, "phone": PHONE},
        "context": {"personas": {"computation_class": "audience", "computation_key": audience}},
    }


def basic(write_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


def test_two_shops_each_take_their_own_events_and_drain_into_their_own_shop(
    emulator_url: str, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(  # noqa: S603 -- our own program
            serve_args(write_shops(tmp_path), state_dir, emulator_url),
            stdout=subprocess.PIPE, stderr=stderr, text=True, env={**os.environ, **ENV},
        )  # fmt: skip
    try:
        announced = read_line(process)
        match = LOOPBACK_URL.search(announced)
        assert match, f"pslab serve did not announce its URL: {log.read_text()}"
        url = match.group(0)
        assert "for shops alpha, beta" in announced
        alpha = httpx.post(f"{url}/shops/alpha/v1/identify", json=event("vip"),
                           headers=basic(ENV["ALPHA_WRITE_KEY"]))  # fmt: skip
        beta = httpx.post(f"{url}/shops/beta/v1/batch", json={"batch": [event("lapsed")]},
                          headers=basic(BETA_WRITE_KEY))  # fmt: skip
        crossed = httpx.post(f"{url}/shops/beta/", json=event("intruder"),
                             headers=basic(ENV["ALPHA_WRITE_KEY"]))  # fmt: skip
        assert (alpha.status_code, beta.status_code, crossed.status_code) == (200, 200, 401)
        status = wait_until_settled(url)
        shown = httpx.get(f"{url}/status").text + httpx.get(f"{url}/metrics").text
        shown += "".join(httpx.get(f"{url}/shops/{name}/status").text for name in status["shops"])
        stop(process)
    finally:
        stop(process, signal.SIGKILL)

    assert process.returncode == 0, log.read_text()
    memberships = {shop: audiences(emulator_url, shop) for shop in ("shop_a", "shop_b")}
    assert memberships == {"shop_a": ["vip"], "shop_b": ["lapsed"]}
    assert {name: shop["shop"] for name, shop in status["shops"].items()} == {
        "alpha": "shop_a",
        "beta": "shop_b",
    }
    assert '"event": "listening"' in log.read_text()  # the log searched below is the real one
    assert {"alpha.sqlite", "beta.sqlite"} <= {path.name for path in state_dir.iterdir()}
    secrets = [*ENV.values(), BETA_WRITE_KEY, "sk_beta_Recognisable1Key"]
    assert [secret for secret in secrets if secret in log.read_text() + shown] == []


def test_a_refused_key_for_one_shop_refuses_the_start_naming_the_shop_and_leaves_no_files(
    emulator_url: str, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    result = subprocess.run(  # noqa: S603 -- our own program
        serve_args(write_shops(tmp_path, beta_key="sk_not_betas_Recognisable5"), state_dir,
                   emulator_url),
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, **ENV},
    )  # fmt: skip

    assert result.returncode == 1, result.stderr
    assert result.stdout == ""  # never announced it was listening
    assert (
        "pslab serve: Postscript refused shop beta's secret key (HTTP 401); check that key"
        in unwrapped(result.stderr)
    )
    assert "alpha" not in unwrapped(result.stderr).rpartition("pslab serve:")[2]
    for secret in (*ENV.values(), BETA_WRITE_KEY, "sk_not_betas_Recognisable5"):
        assert secret not in result.stderr
    assert sorted(path.name for path in state_dir.iterdir()) == []  # alpha's too are gone


def wait_until_settled(url: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = httpx.get(f"{url}/status").json()
        shops = status["shops"].values()
        if all(shop["pending"] == 0 and shop["drain"] == "idle" for shop in shops) and all(
            shop["drain_rate_per_s"] > 0 for shop in shops
        ):
            return status
        assert time.monotonic() < deadline, f"/status never settled: {status}"
        time.sleep(0.05)


def audiences(emulator_url: str, shop: str) -> list[str]:
    state = httpx.get(f"{emulator_url}/_emulator/state", params={"shop": shop}).json()
    (subscriber,) = [item for item in state["subscribers"] if item["phone_number"] == PHONE]
    return list((subscriber.get("properties") or {}).get("Segment Audiences") or [])
