"""Schemathesis against /openapi.json, lenient and strict: no 5xx, responses conform,
bad input is a documented 4xx, and a call without a key is refused.

`PSLAB_FUZZ_EXAMPLES` sets the examples per operation and mode (the `fuzz` nox
session uses 300; the default keeps this test quick inside `tests`).
"""

from __future__ import annotations

import os
from typing import Any

import hypothesis
import schemathesis
from openapi_spec_validator import validate
from schemathesis import checks
from starlette.applications import Starlette

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.emulator import Emulator
from postscript_audience_lab.emulator.postscript.model.seed import seed_subscribers
from postscript_audience_lab.emulator.postscript.openapi.document import openapi_document
from postscript_audience_lab.emulator.postscript.web.app import create_app
from tests.emulator.conftest import SECRET, stand_in_receiver

EXAMPLES = int(os.environ.get("PSLAB_FUZZ_EXAMPLES", "30"))
SUBSCRIBERS = {
    "subscribers": [
        {"id": "s_fuzz1", "phone_number": "+15555550100", "email": "a@example.com"},
        {"id": "s_fuzz2", "phone_number": "+15555550101", "shopify_customer_id": 7},
        {"id": "s_fuzz3", "email": "c@example.com", "shopify_customer_id": "x9"},
    ]
}


WEBHOOK_ID = "0b7c9e3a-2f41-4d6b-9a8e-5c1d2e3f4a5b"  # the subscription PATCHes are pointed at


def seeded_app(*, strict: bool) -> Starlette:
    # Webhook deliveries (test deliveries, opt-outs) go to a stand-in, never the network.
    app = create_app(
        EmulatorConfig(
            rate_limit_rps=0,
            strict=strict,
            webhook_transport=stand_in_receiver,
            webhook_retry_delays=(),
        )
    )
    emulator: Emulator = app.state.emulator
    emulator.store.create(seed_subscribers(SUBSCRIBERS, "US"))
    webhooks = emulator.webhooks_of(emulator.tenancy.default_shop.id)
    webhooks.create("https://hooks.example.com/ps", "shop.test", {}, subscription_id=WEBHOOK_ID)
    return app


lenient = schemathesis.openapi.from_asgi("/openapi.json", seeded_app(strict=False)).exclude(
    path_regex="^/_emulator"
)
strict = schemathesis.openapi.from_asgi("/openapi.json", seeded_app(strict=True)).exclude(
    path_regex="^/_emulator"
)

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
    checks.ignored_auth,
]
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)


def test_both_openapi_documents_are_valid_openapi() -> None:
    validate(openapi_document(strict=False))
    validate(openapi_document(strict=True))


def call_and_validate(case: schemathesis.Case[Any]) -> None:
    # Random ids are all 404s, and PATCH looks the subscriber up before reading
    # the body: point PATCHes at a real subscriber so their bodies get validated
    # (GETs keep the generated ids, which exercises the 404 answer).
    if case.method == "PATCH" and case.path_parameters:
        target = WEBHOOK_ID if case.path.startswith("/api/v2/webhooks") else "s_fuzz1"
        case.path_parameters = {**case.path_parameters, "id": target}
    # The shop's own key: a generated X-Postscript-Shop-Token is then ignored, as documented.
    case.call_and_validate(headers={"Authorization": f"Bearer {SECRET}"}, checks=CHECKS)


@lenient.parametrize()
@SETTINGS
def test_the_lenient_emulator_conforms_to_its_openapi_document(
    case: schemathesis.Case[Any],
) -> None:
    call_and_validate(case)


@strict.parametrize()
@SETTINGS
def test_the_strict_emulator_conforms_to_its_openapi_document(
    case: schemathesis.Case[Any],
) -> None:
    call_and_validate(case)
