"""How fast the web inbox's list pages answer on a full emulator
(docs/design/emulator.md#web-inbox).

`python -m postscript_audience_lab.lab.inbox_bench` serves an emulator on loopback holding
10,000 subscribers (a third with `Segment Audiences`, some opted out) and 100,000 journal
entries (a tenth of them faulted), then asks each page several times over HTTP, as a
browser would, and prints the median and the slowest answer of each. Not a test: the
figures depend on the machine; `--check` holds the slowest of each to the target (300 ms).
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import timedelta
from typing import Annotated

import httpx
import typer

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.emulator import Emulator
from postscript_audience_lab.emulator.postscript.model.store import SubscriberDraft
from postscript_audience_lab.emulator.postscript.model.subscriber import utc_now
from postscript_audience_lab.emulator.postscript.web.app import create_app
from postscript_audience_lab.emulator.postscript.web.serve import serve_app_in_background

__all__ = ["PAGES", "TARGET_MS", "fill", "inbox_bench_command"]

TARGET_MS = 300.0
PAGES = (
    ("subscribers", "/_emulator/ui"),
    ("subscribers, page 150", "/_emulator/ui?page=150"),
    ("search by phone", "/_emulator/ui?q=(415)%20555-4321"),
    ("search part of an email", "/_emulator/ui?q=person12"),
    ("journal", "/_emulator/ui/journal"),
    ("journal, page 900", "/_emulator/ui/journal?page=900"),
    ("journal, filtered", "/_emulator/ui/journal?method=GET&status=4xx&fault=none&path=subscr"),
    ("live check", "/_emulator/ui/live"),
)


def fill(emulator: Emulator, subscribers: int, journal: int, seed: int = 26) -> None:
    """Load `subscribers` subscribers and `journal` journal entries, deterministically."""
    rng = random.Random(seed)
    drafts = [
        SubscriberDraft(
            phone_number=f"+1415{5550000 + n:07d}",
            email=f"person{n}@example.com",
            properties={"Segment Audiences": ["vip", "winback"][: n % 3]} if n % 3 else {},
            tags=["bench"],
            promotional_can_send=n % 10 != 0,
            transactional_can_send=n % 20 != 0,
        )
        for n in range(subscribers)
    ]
    emulator.store.create(drafts)
    start = utc_now() - timedelta(hours=1)
    paths = ("/api/v2/subscribers", "/api/v2/subscribers/s_x", "/api/v2/events", "/api/v2/me")
    for n in range(journal):
        fault = "error" if rng.random() < 0.1 else None
        emulator.journal.append(
            {
                "method": rng.choice(("GET", "GET", "PATCH", "POST")),
                "path": rng.choice(paths),
                "query": f"phone_number__eq=1415555{n % 10000:04d}",
                "status": 500 if fault else rng.choice((200, 200, 200, 404, 429)),
                "time": start + timedelta(milliseconds=n * 30),
                "duration_ms": round(rng.uniform(0.2, 4.0), 3),
                "fault": fault,
            }
        )


def inbox_bench_command(
    subscribers: Annotated[int, typer.Option(help="Subscribers to hold.")] = 10_000,
    journal: Annotated[int, typer.Option(help="Journal entries to hold.")] = 100_000,
    repeats: Annotated[int, typer.Option(help="Requests per page.", min=1)] = 7,
    check: Annotated[bool, typer.Option(help="Fail when a page's slowest is over target.")] = False,
) -> None:
    """Time the web inbox's pages on a full emulator, over loopback HTTP."""
    app = create_app(EmulatorConfig(rate_limit_rps=0, journal_size=max(journal, 1)))
    emulator: Emulator = app.state.emulator
    loading = time.perf_counter()
    fill(emulator, subscribers, journal)
    typer.echo(
        f"{len(emulator.store):,} subscribers and {len(emulator.journal.snapshot()):,} journal "
        f"entries loaded in {time.perf_counter() - loading:.1f} s; {repeats} requests per page"
    )
    typer.echo(f"{'page':<26}{'median ms':>10}{'slowest ms':>12}{'KB':>7}")
    over = []
    with serve_app_in_background(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        client.get("/_emulator/ui/live")  # a connection open before the clock starts
        for name, path in PAGES:
            times, size = [], 0
            for _ in range(repeats):
                started = time.perf_counter()
                answer = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                answer.raise_for_status()
                size = len(answer.content)
            slowest = max(times)
            typer.echo(f"{name:<26}{statistics.median(times):>10.1f}{slowest:>12.1f}"
                       f"{size / 1024:>7.0f}")  # fmt: skip
            if slowest > TARGET_MS:
                over.append(name)
    verdict = f"over {TARGET_MS:g} ms: {', '.join(over)}" if over else f"all under {TARGET_MS:g} ms"
    typer.echo(verdict)
    if check and over:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(inbox_bench_command)
