"""The inbox's page frame: escaping, links that keep the shop, navigation, the shop switcher,
the pager, and the little plain script that keeps the page live.

Pages are built as strings, every value from the emulator's data through `esc` (a subscriber
property holding `<script>` is shown as text). No template engine: the pages are a few
tables and forms, and the emulator ships in the main install, so it gains no dependency
(docs/design/emulator.md#web-inbox).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse

from postscript_audience_lab.emulator.postscript.emulator import Emulator
from postscript_audience_lab.emulator.postscript.web.inbox.queries import Page, version

__all__ = ["UI", "View", "esc", "pager", "render"]

UI = "/_emulator/ui"

_NAV = (("Subscribers", ""), ("Journal", "/journal"), ("Webhooks", "/webhooks"),
        ("Settings", "/settings"))  # fmt: skip


def esc(value: Any) -> str:
    """`value` as text in HTML, in an element or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


@dataclass(frozen=True)
class View:
    """One request to the inbox: the emulator and the shop it looks at."""

    emulator: Emulator
    shop_id: str

    @classmethod
    def of(cls, request: Request) -> View:
        emulator: Emulator = request.app.state.emulator
        asked = request.query_params.get("shop")
        known = asked is not None and emulator.tenancy.shop(asked) is not None
        return cls(emulator, asked if known and asked else emulator.tenancy.default_shop.id)

    @property
    def several_shops(self) -> bool:
        return len(self.emulator.tenancy.shops) > 1

    def href(self, path: str = "", /, **params: Any) -> str:
        """A link under the inbox that keeps the shop; empty parameters are left out."""
        query = {k: v for k, v in params.items() if v not in (None, "")}
        if self.several_shops:
            query["shop"] = self.shop_id
        return UI + path + ("?" + urlencode(query) if query else "")


def _shop_switcher(view: View) -> str:
    if not view.several_shops:
        return ""
    options = "".join(
        f'<option value="{esc(shop.id)}"{" selected" if shop.id == view.shop_id else ""}>'
        f"{esc(shop.id)}</option>"
        for shop in view.emulator.tenancy.shops
    )
    return (
        f'<form class="shops" method="get" action="{UI}">'
        f'<label for="shop-switch">Shop</label> <select id="shop-switch" name="shop">{options}'
        '</select> <button type="submit">Switch</button></form>'
    )


def pager(view: View, path: str, page: Page[Any], /, **params: Any) -> str:
    """Previous / next links and where this page sits among the matches."""
    links = []
    if page.number > 1:
        links.append(f'<a rel="prev" href="{esc(view.href(path, page=page.number - 1, **params))}">'
                     "← Newer</a>")  # fmt: skip
    if page.number < page.pages:
        links.append(f'<a rel="next" href="{esc(view.href(path, page=page.number + 1, **params))}">'
                     "Older →</a>")  # fmt: skip
    return (
        f'<nav class="pager" aria-label="Pages"><span>{page.total:,} found · page '
        f"{page.number:,} of {page.pages:,}</span> {' '.join(links)}</nav>"
    )


def render(view: View, title: str, body: str, *, live: str = "", status: int = 200) -> HTMLResponse:
    """A whole page: `body` (forms and the rest) and `live`, the part the script refreshes."""
    nav = "".join(
        f'<li><a href="{esc(view.href(path))}"{_current(title, name)}>{name}</a></li>'
        for name, path in _NAV
    )
    live_url = view.href("/live")
    document = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · Postscript emulator</title>
<style>{_CSS}</style>
</head>
<body data-live="{esc(live_url)}" data-version="{esc(version(view.emulator, view.shop_id))}">
<a class="skip" href="#main">Skip to content</a>
<header>
<p class="brand">Postscript emulator · <span>{esc(view.shop_id)}</span></p>
<nav aria-label="Inbox"><ul>{nav}</ul></nav>
{_shop_switcher(view)}
</header>
<main id="main">
<h1>{esc(title)}</h1>
{body}
<div id="live" aria-live="polite">{live}</div>
</main>
<script>{_SCRIPT}</script>
</body>
</html>
"""
    return HTMLResponse(document, status_code=status, headers={"Cache-Control": "no-store"})


def _current(title: str, name: str) -> str:
    return ' aria-current="page"' if title.startswith(name) else ""


_CSS = """
:root{font-family:system-ui,sans-serif;color:#1b1b1f;background:#f6f6f8}
body{margin:0}header{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;
padding:.5rem 1rem;background:#20232a;color:#fff}header a{color:#fff}
.brand{margin:0;font-weight:600}.brand span{font-weight:400;opacity:.8}
header ul{display:flex;gap:1rem;list-style:none;margin:0;padding:0}
header a[aria-current]{text-decoration-thickness:3px}
main{padding:1rem;max-width:72rem}h1{margin-top:0;font-size:1.5rem}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff;padding:.5rem}
a:focus,button:focus,input:focus,select:focus,textarea:focus,summary:focus{
outline:3px solid #f5a623;outline-offset:2px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}
form.filters{display:flex;flex-wrap:wrap;gap:.75rem;align-items:end;margin-bottom:1rem}
form.filters label,form.stack label{display:block;font-size:.85rem}
form.stack{display:grid;gap:.6rem;max-width:28rem}
.state{padding:.1rem .4rem;border-radius:.3rem;background:#e4f4e4;white-space:nowrap}
.state.opted-out{background:#fbe3e3}.state.pending{background:#fff3cd}
.tag{display:inline-block;background:#e8eaf6;border-radius:.3rem;padding:0 .3rem;margin:.1rem}
ol.thread{list-style:none;padding:0;max-width:36rem}
ol.thread li{margin:.4rem 0;padding:.5rem .75rem;border-radius:1rem;max-width:80%;width:fit-content}
ol.thread li.out{background:#2f6fed;color:#fff;margin-left:auto}
ol.thread li.failed{background:#999}ol.thread li.in{background:#e5e5ea}
ol.thread small{display:block;opacity:.8;font-size:.75rem}
pre{white-space:pre-wrap;word-break:break-all;background:#fff;padding:.5rem}
.pager{margin:.75rem 0;display:flex;gap:1rem}.notice{background:#e4f4e4;padding:.5rem}
.problem{background:#fbe3e3;padding:.5rem}.grid{display:grid;gap:1rem;
grid-template-columns:repeat(auto-fit,minmax(18rem,1fr))}
"""

# Every 1.5 s: ask whether anything changed, and if so fetch this same page and swap in its
# live part. Forms sit outside that part, so what a person is typing is never replaced.
_SCRIPT = """
(function(){var live=document.getElementById("live");if(!live||!window.fetch)return;
var body=document.body,seen=body.getAttribute("data-version"),busy=false;
setInterval(function(){if(busy)return;busy=true;
fetch(body.getAttribute("data-live"),{cache:"no-store"}).then(function(r){return r.text();})
.then(function(now){if(now===seen)return;seen=now;
return fetch(location.href,{cache:"no-store"}).then(function(r){return r.text();})
.then(function(text){var doc=new DOMParser().parseFromString(text,"text/html");
var fresh=doc.getElementById("live");if(fresh)live.innerHTML=fresh.innerHTML;});})
.catch(function(){}).then(function(){busy=false;});},1500);})();
"""
