"""The inbox's subscriber pages: the searchable list, one subscriber (properties, tags, the
conversation, events, webhook deliveries) and the reply box that texts the shop as them."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from postscript_audience_lab.emulator.postscript.errors import ResourceNotFound
from postscript_audience_lab.emulator.postscript.model.lifecycle import receive_text
from postscript_audience_lab.emulator.postscript.model.subscriber import Subscriber, format_time
from postscript_audience_lab.emulator.postscript.web.inbox.forms import read_form
from postscript_audience_lab.emulator.postscript.web.inbox.layout import (
    View,
    esc,
    pager,
    render,
)
from postscript_audience_lab.emulator.postscript.web.inbox.queries import (
    AUDIENCES_PROPERTY,
    Page,
    audiences,
    conversation,
    deliveries_about,
    search_subscribers,
    subscription_state,
)

__all__ = ["PAGE_SIZE", "reply", "subscriber_page", "subscribers_page"]

PAGE_SIZE = 50


def _page_number(request: Request) -> int:
    text = request.query_params.get("page", "1")
    return int(text) if text.isdigit() else 1


def _state(subscriber: Subscriber) -> str:
    state = subscription_state(subscriber)
    return f'<span class="state {state.replace(" ", "-")}">{esc(state)}</span>'


def _tags(values: list[str]) -> str:
    return " ".join(f'<span class="tag">{esc(value)}</span>' for value in values)


async def subscribers_page(request: Request) -> Response:
    view = View.of(request)
    query = request.query_params.get("q", "")
    store = view.emulator.store_of(view.shop_id)
    found = search_subscribers(store, query, view.emulator.config.default_region)
    page = Page.of(found, _page_number(request), PAGE_SIZE)
    rows = "".join(
        "<tr>"
        f'<td><a href="{esc(view.href("/subscribers/" + s.id))}">{esc(s.phone_number or "—")}</a>'
        f"</td><td>{esc(s.email or '')}</td><td>{_state(s)}</td><td>{_tags(audiences(s))}</td>"
        f"<td>{_tags(s.tags)}</td><td>{esc(format_time(s.created_at)[:19])}</td></tr>"
        for s in page.items
    )
    search = f"""<form class="filters" method="get" action="{esc(view.href())}" role="search">
{_shop_field(view)}<div><label for="q">Phone (any spelling) or email</label>
<input id="q" name="q" type="search" value="{esc(query)}" autocomplete="off"></div>
<button type="submit">Search</button></form>"""
    table = (
        f"{pager(view, '', page, q=query)}<table><caption>Subscribers of {esc(view.shop_id)}"
        "</caption><thead><tr><th scope=col>Phone</th><th scope=col>Email</th>"
        f"<th scope=col>Subscription</th><th scope=col>{AUDIENCES_PROPERTY}</th>"
        f"<th scope=col>Tags</th><th scope=col>Created (UTC)</th></tr></thead><tbody>{rows}"
        "</tbody></table>"
        if page.items
        else "<p>No subscriber matches.</p>"
    )
    return render(view, "Subscribers", search, live=table)


def _shop_field(view: View) -> str:
    if not view.several_shops:
        return ""
    return f'<input type="hidden" name="shop" value="{esc(view.shop_id)}">'


def _find(view: View, subscriber_id: str) -> Subscriber | None:
    try:
        return view.emulator.store_of(view.shop_id).get_any(subscriber_id)
    except ResourceNotFound:
        return None


async def subscriber_page(request: Request) -> Response:
    view = View.of(request)
    subscriber = _find(view, request.path_params["subscriber_id"])
    if subscriber is None:
        body = f'<p>No such subscriber in this shop. <a href="{esc(view.href())}">All</a></p>'
        return render(view, "Subscriber not found", body, status=404)
    emulator = view.emulator
    emulator.send_due_messages()
    notice = request.query_params.get("sent")
    reply_form = f"""<form class="stack" method="post"
action="{esc(view.href("/subscribers/" + subscriber.id + "/reply"))}">
<label for="reply">Text the shop as {esc(subscriber.phone_number or "this person")}
(YES, STOP, anything)</label>
<textarea id="reply" name="body" rows="2" required></textarea>
<button type="submit">Send as subscriber</button></form>"""
    if subscriber.phone_number is None:
        reply_form = "<p>This subscriber has no phone number, so cannot text the shop.</p>"
    top = (
        f'<p class="notice" role="status">Sent “{esc(notice)}”.</p>' if notice else ""
    ) + reply_form
    return render(view, f"Subscriber {subscriber.phone_number or subscriber.id}", top,
                  live=_details(view, subscriber))  # fmt: skip


def _details(view: View, subscriber: Subscriber) -> str:
    emulator = view.emulator
    thread = conversation(emulator.messages_of(view.shop_id), subscriber)
    bubbles = "".join(
        f'<li class="{esc(item.direction)}">{esc(item.body)}'
        f"<small>{esc(format_time(item.at)[:19])} · {esc(item.note)}</small></li>"
        for item in thread
    )
    properties = "".join(
        f"<tr><th scope=row>{esc(key)}</th>"
        f"<td>{esc(json.dumps(value, ensure_ascii=False))}</td></tr>"
        for key, value in subscriber.properties.items()
    )
    region = emulator.config.default_region
    events = "".join(
        f"<li><strong>{esc(event.get('type'))}</strong> {esc(event.get('received_at'))}"
        f"<pre>{esc(json.dumps(event.get('properties'), ensure_ascii=False))}</pre></li>"
        for event in emulator.store_of(view.shop_id).events_of(subscriber, region)
    )
    deliveries = deliveries_about(emulator.dispatcher.deliveries(view.shop_id), subscriber)
    delivery_rows = "".join(
        f"<tr><td>{esc(d.event)}</td><td>{esc(d.state)}</td><td>{len(d.attempts)}</td>"
        f"<td>{esc(d.callback_url)}</td></tr>"
        for d in deliveries
    )
    facts = (
        f"<dl><dt>Subscription</dt><dd>{_state(subscriber)}</dd>"
        f"<dt>Id</dt><dd>{esc(subscriber.id)} (ps_id {subscriber.ps_id})</dd>"
        f"<dt>Email</dt><dd>{esc(subscriber.email or '—')}</dd>"
        f"<dt>{AUDIENCES_PROPERTY}</dt><dd>{_tags(audiences(subscriber)) or '—'}</dd>"
        f"<dt>Tags</dt><dd>{_tags(subscriber.tags) or '—'}</dd></dl>"
    )
    return f"""<div class="grid"><section aria-labelledby="h-conv"><h2 id="h-conv">Conversation</h2>
{f'<ol class="thread">{bubbles}</ol>' if bubbles else "<p>No texts yet.</p>"}</section>
<section aria-labelledby="h-facts"><h2 id="h-facts">Subscriber</h2>{facts}
<h3>Properties</h3>{f"<table><tbody>{properties}</tbody></table>" if properties else "<p>None.</p>"}
</section></div>
<section aria-labelledby="h-events"><h2 id="h-events">Custom events</h2>
{f"<ul>{events}</ul>" if events else "<p>None.</p>"}</section>
<section aria-labelledby="h-hooks"><h2 id="h-hooks">Webhook deliveries about them</h2>
{_delivery_table(delivery_rows)}</section>"""


def _delivery_table(rows: str) -> str:
    if not rows:
        return "<p>None.</p>"
    return (
        "<table><thead><tr><th scope=col>Event</th><th scope=col>State</th>"
        f"<th scope=col>Attempts</th><th scope=col>Callback</th></tr></thead><tbody>{rows}"
        "</tbody></table>"
    )


async def reply(request: Request) -> Response:
    """The reply box: a text from the subscriber's phone to the shop, as the inbound admin
    call (`POST /_emulator/inbound`) sends it; back to their page, under their new id if a
    YES confirmed them."""
    view = View.of(request)
    subscriber = _find(view, request.path_params["subscriber_id"])
    form = await read_form(request)
    text = form.get("body", "").strip()
    if subscriber is None or subscriber.phone_number is None or not text:
        return RedirectResponse(view.href(), status_code=303)
    outcome = receive_text(view.emulator, view.shop_id, subscriber.phone_number, text)
    now = outcome.subscriber.id if outcome.subscriber is not None else subscriber.id
    if _find(view, now) is None:  # a STOP from a pending subscriber cancels the signup
        return RedirectResponse(view.href(), status_code=303)
    return RedirectResponse(view.href("/subscribers/" + now, sent=text[:60]), status_code=303)
