"""The web inbox at `/_emulator/ui` (docs/design/emulator.md#web-inbox): subscribers and their
conversations, the request journal, webhook deliveries and the settings, server-rendered,
with no asset from anywhere else."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from postscript_audience_lab.emulator.postscript.web.inbox import activity, settings, subscribers
from postscript_audience_lab.emulator.postscript.web.inbox.layout import UI, View
from postscript_audience_lab.emulator.postscript.web.inbox.queries import version

__all__ = ["UI", "routes"]


async def live(request: Request) -> Response:
    """What the page's script polls: a text that changes when what it shows changes."""
    view = View.of(request)
    headers = {"Cache-Control": "no-store"}
    return PlainTextResponse(version(view.emulator, view.shop_id), headers=headers)


routes = [
    Route(UI, subscribers.subscribers_page, methods=["GET"]),
    Route(UI + "/subscribers/{subscriber_id}", subscribers.subscriber_page, methods=["GET"]),
    Route(UI + "/subscribers/{subscriber_id}/reply", subscribers.reply, methods=["POST"]),
    Route(UI + "/journal", activity.journal_page, methods=["GET"]),
    Route(UI + "/webhooks", activity.webhooks_page, methods=["GET"]),
    Route(UI + "/settings", settings.settings_page, methods=["GET"]),
    Route(UI + "/settings", settings.save_settings, methods=["POST"]),
    Route(UI + "/reset", settings.confirm_reset, methods=["GET"]),
    Route(UI + "/reset", settings.reset, methods=["POST"]),
    Route(UI + "/live", live, methods=["GET"]),
]
