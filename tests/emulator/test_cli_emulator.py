"""`pslab emulator` as a user runs it: a subprocess on a loopback port."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.processes import read_line, stop, unwrapped

PSLAB = [
    sys.executable,
    "-c",
    "from postscript_audience_lab.lab.cli import main; main()",
    "emulator",
]


@contextmanager
def running_emulator(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start `pslab emulator --port 0 ARGS`, yield the URL from its ready line, stop it with ^C."""
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
        [*PSLAB, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        line = read_line(process, timeout=30)
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        if match is None:
            stop(process, signal.SIGKILL)  # so that reading its stderr cannot block
            stderr = process.stderr.read() if process.stderr else ""
            raise AssertionError(f"no URL in {line!r}; stderr: {stderr}")
        yield match.group(0)
    finally:
        stop(process, signal.SIGINT)


def test_serves_the_seed_with_the_key_from_the_environment_and_keeps_state(tmp_path: Path) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps({"subscribers": [{"phone_number": "+15555550100"}]}))
    state_file = tmp_path / "state.sqlite"
    key = {"PSLAB_EMULATOR_SECRET_KEY": "sk_cli_test"}
    auth = {"Authorization": "Bearer sk_cli_test"}
    with running_emulator(
        "--seed", str(seed_file), "--state", str(state_file), "--rate-limit", "0", env=key
    ) as url:
        found = httpx.get(f"{url}/api/v2/subscribers?phone_number__eq=5555550100", headers=auth)
        wrong_key = httpx.get(f"{url}/api/v2/me", headers={"Authorization": "Bearer sk_test_pslab"})
        assert found.status_code == 200, found.text
        subscriber_id = found.json()["subscribers"][0]["id"]
        httpx.patch(
            f"{url}/api/v2/subscribers/{subscriber_id}", json={"properties": {"a": 1}}, headers=auth
        ).raise_for_status()
    with running_emulator("--state", str(state_file), env=key) as url:
        kept = httpx.get(f"{url}/api/v2/subscribers/{subscriber_id}", headers=auth)
    assert kept.status_code == 200, kept.text
    assert len(found.json()["subscribers"]) == 1
    assert wrong_key.status_code == 401
    assert kept.json()["properties"] == {"a": 1}


def test_prints_the_web_inbox_url_where_it_listens() -> None:
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
        [*PSLAB, "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        listening = read_line(process, timeout=30)
        inbox_line = read_line(process, timeout=30)
        url = inbox_line.removeprefix("Web inbox: ").strip()
        page = httpx.get(url)
    finally:
        stop(process, signal.SIGINT)
    assert url.startswith("http://127.0.0.1:"), inbox_line
    assert url.endswith("/_emulator/ui"), inbox_line
    assert url.startswith(listening.split()[4])
    assert page.status_code == 200
    assert "<h1>Subscribers</h1>" in page.text


def test_a_bad_seed_file_is_refused_in_one_sentence(tmp_path: Path) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps({"subscribers": [{"phone_number": "nope"}]}))
    result = subprocess.run(  # noqa: S603 - our own interpreter and fixed arguments
        [*PSLAB, "--port", "0", "--seed", str(seed_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "subscribers.0.phone_number" in unwrapped(result.stderr)


def test_a_port_in_use_is_refused_in_one_sentence() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(  # noqa: S603 - our own interpreter and fixed arguments
            [*PSLAB, "--port", str(port)], capture_output=True, text=True, timeout=60, check=False
        )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: cannot listen on 127.0.0.1:{port} (Address already in use); "
        "choose another host or port"
    )


def test_json_prints_the_ready_line_and_the_summary_as_objects() -> None:
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
        [*PSLAB, "--port", "0", "--json"], stdout=subprocess.PIPE, text=True
    )
    try:
        ready = json.loads(read_line(process, timeout=30))
        me = httpx.get(
            f"{ready['url']}/api/v2/me", headers={"Authorization": "Bearer sk_test_pslab"}
        )
        inbox = httpx.get(ready["inbox"])
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=15)
    finally:
        stop(process, signal.SIGKILL)  # only does anything when the lines above failed
    assert me.status_code == 200, me.text
    assert ready["url"].startswith("http://127.0.0.1:")
    assert ready["subscribers"] == 0
    assert ready["inbox"] == ready["url"] + "/_emulator/ui"
    assert inbox.status_code == 200
    assert inbox.headers["content-type"].startswith("text/html")
    assert json.loads(out) == {"api_requests": 1, "subscribers": 0, "events": 0}


def test_shops_and_strict_from_the_command_line(tmp_path: Path) -> None:
    shops = tmp_path / "shops.json"
    shops.write_text(
        json.dumps(
            {
                "shops": [
                    {"id": "shop_a", "secret_key": "sk_cli_a"},
                    {
                        "id": "shop_b",
                        "secret_key": "sk_cli_b",
                        "keywords": [{"keyword": "WELCOME"}],
                    },
                ],
                "partners": [{"id": "partner_p", "key": "sk_partner_cli"}],
            }
        )
    )
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(
        json.dumps({"shop": "shop_b", "subscribers": [{"phone_number": "+15555550100"}]})
    )
    with running_emulator("--shops", str(shops), "--seed", str(seed_file), "--strict") as url:
        as_partner = {
            "Authorization": "Bearer sk_partner_cli",
            "X-Postscript-Shop-Token": "sk_cli_b",
        }
        in_b = httpx.get(f"{url}/api/v2/subscribers", headers=as_partner)
        in_a = httpx.get(f"{url}/api/v2/subscribers", headers={"Authorization": "Bearer sk_cli_a"})
        misspelt = httpx.get(f"{url}/api/v2/subscribers?phone__eq=1", headers=as_partner)
        keywords = httpx.get(f"{url}/api/v2/keywords", headers=as_partner).json()["keywords"]
        default_key = httpx.get(
            f"{url}/api/v2/me", headers={"Authorization": "Bearer sk_test_pslab"}
        )
    assert [s["phone_number"] for s in in_b.json()["subscribers"]] == ["+15555550100"]
    assert in_a.json()["subscribers"] == []
    assert misspelt.status_code == 400
    assert [k["keyword"] for k in keywords] == ["JOIN", "VIP", "WELCOME"]
    assert default_key.status_code == 401


def test_a_bad_shops_file_is_refused_in_one_sentence(tmp_path: Path) -> None:
    shops = tmp_path / "shops.json"
    shops.write_text(json.dumps({"shops": [{"id": "shop_a", "secret_key": "pk_oops"}]}))
    result = subprocess.run(  # noqa: S603 - our own interpreter and fixed arguments
        [*PSLAB, "--port", "0", "--shops", str(shops)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "shops.0.secret_key: must not start with pk_" in unwrapped(result.stderr)


def test_webhook_retry_delays_from_the_command_line() -> None:
    refused = subprocess.run(  # noqa: S603 - our own interpreter and fixed arguments
        [*PSLAB, "--port", "0", "--webhook-retry-delays", "1,soon"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "--webhook-retry-delays" in refused.stderr
    with socket.socket() as sock:  # a port nothing listens on: every attempt is refused
        sock.bind(("127.0.0.1", 0))
        hook = f"http://127.0.0.1:{sock.getsockname()[1]}/hooks"
    with running_emulator("--webhook-retry-delays", "0,0") as url:
        key = {"Authorization": "Bearer sk_test_pslab"}
        body = {"callback_url": hook, "event": "shop.incoming_message"}
        assert httpx.post(f"{url}/api/v2/webhooks", json=body, headers=key).status_code == 200
        text = {"phone_number": "+15555550100", "body": "hi"}
        assert httpx.post(f"{url}/_emulator/inbound", json=text).status_code == 200
        (delivery,) = httpx.post(f"{url}/_emulator/webhooks/flush", timeout=60).json()["deliveries"]
    assert delivery["state"] == "failed"
    assert len(delivery["attempts"]) == 3
