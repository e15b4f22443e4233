"""The emulator guide's curl examples work as written (against a real server)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.serve import serve_in_background

GUIDE = Path(__file__).parents[2] / "docs" / "guides" / "emulator.md"


def _curl_examples() -> str:
    blocks: list[str] = re.findall(r"```\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    (examples,) = [b for b in blocks if b.lstrip().startswith("# seed")]
    return examples


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl on PATH")
def test_readme_curl_examples_succeed(tmp_path: Path) -> None:
    examples = _curl_examples()
    with serve_in_background(EmulatorConfig()) as url:
        script = tmp_path / "examples.sh"
        script.write_text("set -euo pipefail\n" + examples.replace("http://127.0.0.1:8787", url))
        result = subprocess.run(  # noqa: S603 - a script we just wrote from the guide
            ["bash", str(script)],  # noqa: S607 - bash from PATH, as a reader would run it
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert '"success":false' not in result.stdout
    assert '"errors"' not in result.stdout
    assert '"event_ids":["ev_' in result.stdout
    assert '"Segment Audiences":["vip","winback"]' in result.stdout
