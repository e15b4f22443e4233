"""The inbox's settings page: the injected faults and the rate limit, changed from the page
as `PUT /_emulator/faults` changes them, and the reset, behind a confirmation."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from postscript_audience_lab.emulator.postscript.errors import InvalidInput
from postscript_audience_lab.emulator.postscript.web.faults import parse_settings
from postscript_audience_lab.emulator.postscript.web.inbox.forms import read_form
from postscript_audience_lab.emulator.postscript.web.inbox.layout import View, esc, render

__all__ = ["confirm_reset", "reset", "save_settings", "settings_page"]

# (form field, label, the setting's key in GET /_emulator/faults)
_FIELDS = (
    ("error_rate", "Error rate (0 to 1)"),
    ("error_statuses", "Error statuses (comma-separated)"),
    ("latency_min_ms", "Latency from (ms)"),
    ("latency_max_ms", "Latency to (ms)"),
    ("timeout_rate", "Timeout rate (0 to 1)"),
    ("timeout_ms", "Timeout after (ms)"),
    ("rate_limit_rps", "Rate limit (requests/s per key, 0 = none)"),
    ("seed", "Seed (empty = random)"),
)


def _current(view: View) -> dict[str, str]:
    settings = view.emulator.faults.settings
    return {
        "error_rate": f"{settings.error_rate:g}",
        "error_statuses": ", ".join(map(str, settings.error_statuses)),
        "latency_min_ms": f"{settings.latency_ms[0]:g}",
        "latency_max_ms": f"{settings.latency_ms[1]:g}",
        "timeout_rate": f"{settings.timeout_rate:g}",
        "timeout_ms": f"{settings.timeout_ms:g}",
        "rate_limit_rps": f"{view.emulator.rate_limiter.rps:g}",
        "seed": "" if settings.seed is None else str(settings.seed),
    }


def _form(view: View, values: dict[str, str], problem: str = "") -> str:
    fields = "".join(
        f'<div><label for="s-{name}">{esc(label)}</label>'
        f'<input id="s-{name}" name="{name}" value="{esc(values.get(name, ""))}"></div>'
        for name, label in _FIELDS
    )
    alert = f'<p class="problem" role="alert">{esc(problem)}</p>' if problem else ""
    return f"""{alert}<form class="stack" method="post" action="{esc(view.href("/settings"))}">
<fieldset><legend>Faults on API calls and the rate limit</legend>{fields}</fieldset>
<button type="submit">Save settings</button></form>
<h2>Reset</h2><p>Forget every shop's subscribers, events, texts, webhooks and the journal.</p>
<p><a href="{esc(view.href("/reset"))}">Reset the emulator…</a></p>"""


async def settings_page(request: Request) -> Response:
    view = View.of(request)
    saved = '<p class="notice" role="status">Saved.</p>' if "saved" in request.query_params else ""
    return render(view, "Settings", saved + _form(view, _current(view)))


def _number(text: str) -> Any:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text  # parse_settings names it


async def save_settings(request: Request) -> Response:
    view = View.of(request)
    form = await read_form(request)
    body: dict[str, Any] = {
        name: _number(form.get(name, ""))
        for name in ("error_rate", "timeout_rate", "timeout_ms", "rate_limit_rps")
    }
    statuses = [part for part in form.get("error_statuses", "").split(",") if part.strip()]
    body["error_statuses"] = [_number(part) for part in statuses] or [500]
    body["latency_ms"] = [_number(form.get("latency_min_ms", "0")),
                          _number(form.get("latency_max_ms", "0"))]  # fmt: skip
    if form.get("seed", "").strip():
        body["seed"] = _number(form["seed"])
    try:
        settings, rps = parse_settings(body, view.emulator.rate_limiter.rps)
    except InvalidInput as error:
        first = error.problems[0]
        where = ".".join(map(str, first["loc"][1:]))
        return render(view, "Settings", _form(view, form, f"{where}: {first['msg']}"), status=400)
    view.emulator.faults.configure(settings)
    view.emulator.rate_limiter.rps = rps
    return RedirectResponse(view.href("/settings", saved=1), status_code=303)


async def confirm_reset(request: Request) -> Response:
    view = View.of(request)
    body = f"""<p>This forgets every shop's subscribers, events, texts, webhook subscriptions
and deliveries, and the request journal. Settings and shops stay.</p>
<form method="post" action="{esc(view.href("/reset"))}">
<button type="submit">Yes, reset everything</button>
<a href="{esc(view.href("/settings"))}">Cancel</a></form>"""
    return render(view, "Reset the emulator?", body)


async def reset(request: Request) -> Response:
    view = View.of(request)
    await read_form(request)  # refuses another site's post
    view.emulator.reset()
    return RedirectResponse(view.href(), status_code=303)
