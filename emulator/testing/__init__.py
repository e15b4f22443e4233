"""Test your own Postscript integration against the emulator (docs/design/layout.md).

    from postscript_audience_lab.emulator.testing import Postscript, mock_postscript

- `Postscript` (handle.py): a typed handle on an emulator, in process or at a URL;
- `mock_postscript` (mock.py): https://api.postscript.io served in process, for httpx,
  requests and aiohttp (clients.py); the real API out of reach meanwhile (guard.py);
- `serve_postscript` (server.py): an emulator on a loopback port, for any client;
- plugin.py: the pytest fixtures `postscript`, `mock_postscript`, `postscript_server`;
- strategies.py: hypothesis strategies (needs `postscript-audience-lab[testing]`).

The names below load on first use: the pytest plugin lives in this package and
loads in every pytest run, so importing the package must cost nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from postscript_audience_lab.emulator.testing.guard import RealPostscriptBlocked
    from postscript_audience_lab.emulator.testing.handle import (
        POSTSCRIPT_API,
        EmulatorAdminError,
        Postscript,
    )
    from postscript_audience_lab.emulator.testing.mock import (
        PostscriptMock,
        UnroutedRequest,
        mock_postscript,
    )
    from postscript_audience_lab.emulator.testing.records import (
        ApiRequest,
        DeliveryAttempt,
        Event,
        Faults,
        InboundText,
        Keyword,
        Message,
        MessageRequest,
        Subscriber,
        SubscriberSeed,
        WebhookDelivery,
    )
    from postscript_audience_lab.emulator.testing.server import serve_postscript

__all__ = [
    "POSTSCRIPT_API",
    "ApiRequest",
    "DeliveryAttempt",
    "EmulatorAdminError",
    "Event",
    "Faults",
    "InboundText",
    "Keyword",
    "Message",
    "MessageRequest",
    "Postscript",
    "PostscriptMock",
    "RealPostscriptBlocked",
    "Subscriber",
    "SubscriberSeed",
    "UnroutedRequest",
    "WebhookDelivery",
    "mock_postscript",
    "serve_postscript",
]

_MODULE_OF = {
    "POSTSCRIPT_API": "handle",
    "EmulatorAdminError": "handle",
    "Postscript": "handle",
    "PostscriptMock": "mock",
    "UnroutedRequest": "mock",
    "RealPostscriptBlocked": "guard",
    "mock_postscript": "mock",
    "ApiRequest": "records",
    "DeliveryAttempt": "records",
    "Event": "records",
    "Faults": "records",
    "InboundText": "records",
    "Keyword": "records",
    "Message": "records",
    "MessageRequest": "records",
    "Subscriber": "records",
    "SubscriberSeed": "records",
    "WebhookDelivery": "records",
    "serve_postscript": "server",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value
