"""The inbox's activity pages: the request journal, filtered, and the webhook deliveries
with their attempts."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from postscript_audience_lab.emulator.postscript.model.delivery import Delivery
from postscript_audience_lab.emulator.postscript.model.subscriber import format_time
from postscript_audience_lab.emulator.postscript.web.inbox.layout import View, esc, pager, render
from postscript_audience_lab.emulator.postscript.web.inbox.queries import (
    JournalFilter,
    Page,
    filter_journal,
)

__all__ = ["JOURNAL_PAGE_SIZE", "journal_page", "webhooks_page"]

JOURNAL_PAGE_SIZE = 100
DELIVERY_PAGE_SIZE = 50
_METHODS = ("", "GET", "POST", "PATCH", "PUT", "DELETE")
_FAULTS = (("", "any or none"), ("any", "any fault"), ("none", "no fault"),
           ("error", "error"), ("timeout", "timeout"))  # fmt: skip


def _page_number(request: Request) -> int:
    text = request.query_params.get("page", "1")
    return int(text) if text.isdigit() else 1


def _options(choices: tuple[tuple[str, str], ...], chosen: str) -> str:
    return "".join(
        f'<option value="{esc(value)}"{" selected" if value == chosen else ""}>'
        f"{esc(label)}</option>"
        for value, label in choices
    )


async def journal_page(request: Request) -> Response:
    view = View.of(request)
    params = request.query_params
    wanted = JournalFilter(
        method=params.get("method", "").upper(),
        path=params.get("path", ""),
        status=params.get("status", ""),
        fault=params.get("fault", ""),
    )
    entries = view.emulator.journal.snapshot()
    page = filter_journal(entries, wanted, _page_number(request), JOURNAL_PAGE_SIZE)
    methods = tuple((m, m or "any") for m in _METHODS)
    shop = (
        f'<input type="hidden" name="shop" value="{esc(view.shop_id)}">'
        if view.several_shops
        else ""
    )
    form = f"""<form class="filters" method="get" action="{esc(view.href("/journal"))}">{shop}
<div><label for="f-method">Method</label><select id="f-method" name="method">
{_options(methods, wanted.method)}</select></div>
<div><label for="f-path">Path contains</label>
<input id="f-path" name="path" value="{esc(wanted.path)}"></div>
<div><label for="f-status">Status (200, 4xx, none)</label>
<input id="f-status" name="status" size="6" value="{esc(wanted.status)}"></div>
<div><label for="f-fault">Fault</label><select id="f-fault" name="fault">
{_options(_FAULTS, wanted.fault)}</select></div>
<button type="submit">Filter</button></form>
<p>Every call on the emulated API, newest first, across shops ({view.emulator.journal.total:,}
since start or reset; admin calls and this page are not journaled).</p>"""
    rows = "".join(_journal_row(entry) for entry in page.items)
    filters = {"method": wanted.method, "path": wanted.path, "status": wanted.status,
               "fault": wanted.fault}  # fmt: skip
    table = (
        f"{pager(view, '/journal', page, **filters)}<table><caption>Request journal</caption>"
        "<thead><tr><th scope=col>Time (UTC)</th><th scope=col>Method</th><th scope=col>Path</th>"
        "<th scope=col>Status</th><th scope=col>Fault</th><th scope=col>Details</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
        if page.items
        else "<p>No call matches.</p>"
    )
    return render(view, "Journal", form, live=table)


def _journal_row(entry: dict[str, object]) -> str:
    moment = entry["time"]
    when = format_time(moment)[:23] if not isinstance(moment, str) else moment
    status = "dropped" if entry["status"] is None else entry["status"]
    details = (
        f"<details><summary>{esc(entry['duration_ms'])} ms</summary><dl>"
        f"<dt>Path</dt><dd>{esc(entry['path'])}</dd>"
        f"<dt>Query</dt><dd>{esc(entry['query'] or '—')}</dd>"
        f"<dt>Received</dt><dd>{esc(when)}</dd></dl></details>"
    )
    return (
        f"<tr><td>{esc(when[11:])}</td><td>{esc(entry['method'])}</td>"
        f"<td>{esc(entry['path'])}</td><td>{esc(status)}</td>"
        f"<td>{esc(entry['fault'] or '')}</td><td>{details}</td></tr>"
    )


async def webhooks_page(request: Request) -> Response:
    view = View.of(request)
    deliveries = view.emulator.dispatcher.deliveries(view.shop_id)
    deliveries.reverse()
    page = Page.of(deliveries, _page_number(request), DELIVERY_PAGE_SIZE)
    items = "".join(_delivery(d) for d in page.items)
    body = (
        "<p>Each event sent to each webhook subscription of this shop, newest first, with "
        "every attempt and its answer (only a 200 delivers).</p>"
    )
    live = (
        f'{pager(view, "/webhooks", page)}<ol class="deliveries">{items}</ol>'
        if items
        else "<p>No webhook delivery yet: subscribe with POST /api/v2/webhooks.</p>"
    )
    return render(view, "Webhooks", body, live=live)


def _delivery(delivery: Delivery) -> str:
    attempts = "".join(
        f"<tr><td>{a.number}</td><td>{esc(format_time(a.at)[11:23])}</td>"
        f"<td>{esc(a.status if a.status is not None else 'no answer')}</td>"
        f"<td>{esc(a.error or '')}</td><td>{a.duration_ms:.1f} ms</td></tr>"
        for a in delivery.attempts
    )
    table = (
        "<table><thead><tr><th scope=col>Attempt</th><th scope=col>Time</th>"
        "<th scope=col>Answer</th><th scope=col>Error</th><th scope=col>Took</th></tr></thead>"
        f"<tbody>{attempts}</tbody></table>"
        if attempts
        else "<p>Not attempted yet.</p>"
    )
    payload = json.dumps(delivery.payload, indent=2, ensure_ascii=False)
    return (
        f'<li class="delivery"><h2>{esc(delivery.event)} <span class="state">'
        f"{esc(delivery.state)}</span></h2><p>to {esc(delivery.callback_url)} · "
        f"{esc(format_time(delivery.created_at)[:19])}</p>{table}"
        f"<details><summary>Payload</summary><pre>{esc(payload)}</pre></details></li>"
    )
