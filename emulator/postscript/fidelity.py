"""The fidelity policy: what the emulator chose where Postscript's reference is silent.

Where the published Partner API reference states a behaviour the emulator
does it; every other behaviour is one of these choices, each a row of the
table in docs/design/emulator-choices.md with its evidence. An answer shaped by a choice
names it in the `X-Pslab-Emulator-Choice` header, so a test or a person
reading the traffic can tell the emulator's word from Postscript's.

`--strict` (`EmulatorConfig.strict`) adds the checks that catch a client's
mistakes though Postscript may not make them: unknown query parameters and
body fields, property values outside the documented types, a phone that is
not a number, identifiers that name different subscribers, and an event that
names no subscriber.
"""

from __future__ import annotations

__all__ = ["CHOICES", "CHOICE_HEADER", "choice_header"]

CHOICE_HEADER = "x-pslab-emulator-choice"

CHOICES: dict[str, str] = {
    "create-subscriber": "POST /api/v2/subscribers is served, though the reference lacks it",
    "not-found-3001": "an unknown id, or a call naming nobody, is a 404 with error_code 3001",
    "error-code-stand-in": "an error with no published code carries its HTTP status as error_code",
    "bad-input-body": "a 400 lists every problem in errors[]",
    "forbidden-body": "a 403 outside keywords and compliance has compliance's documented body",
    "auth-keys": "a shop's public key is a 403, an unknown key a 401; legacy Basic auth works",
    "auth-partner": "a partner key alone may only call /me; the shop token is the shop's API key",
    "rate-limit": "a token bucket per shop key, partner key or partner/shop pair",
    "event-identifiers": "of several identifiers, the first of subscriber_id, phone, email wins",
    "event-without-subscriber": "an event naming no subscriber is accepted unless --strict",
    "lenient-input": "unknown query parameters and body fields are ignored unless --strict",
    "property-values": "any JSON property value is kept unless --strict",
    "properties-string": "PATCH properties may be a JSON object or a string holding one",
    "phone-matching": "phone numbers match on their digits",
    "email-matching": "emails match case-insensitively",
    "in-filters": "__in takes repeated parameters, comma-joined values, or both",
    "pages-and-sort": "pages of 100 in creation order; a sort field outside the list is a 400",
    "property-limit": "an update that would leave over 50 properties is a 400 and changes nothing",
    "compliance-targets": "unsubscribe and redact act on every subscriber an identifier names",
    "redact-scope": "redact clears phone, email, Shopify id, properties and tags, and opts out",
    "keywords": "each shop has JOIN and VIP, plus keywords added as data",
    "events-stored": "events are stored as posted; external_id is not deduplicated",
    "strict-json": "bodies are read strictly: 400, 413 or 415 before anything changes",
    "email-format": "an email that is not an address is a 400",
    "shops": "each shop has its own subscribers, events, keywords and ps_id sequence",
    "subscriber-format": "ids, ps_id and timestamps; updated_at grows on every change",
    "opt-in": "a created subscriber is pending (sp_ id, hidden) until a text confirms it",
    "inbound-texts": "YES confirms, the carrier opt-out words opt out, other texts are messages",
    "message-statuses": "a message request is scheduled, sent or failed, with a status_code why",
    "message-categories": "promotional needs the promotional subscription, the rest transactional",
    "webhook-delivery": "2xx delivers; other answers are retried after short, configurable delays",
    "webhook-payloads": "the event_data of events whose payload the reference does not show",
    "webhook-test": "a test delivery goes to every subscription to the event, with its example",
    "callback-urls": "callback URLs are HTTPS, or HTTP on a loopback host; headers are checked",
    "webhook-event-names": "both spellings of the email-collected event are taken",
    "webhook-subscriptions": "subscriptions are kept in memory, per shop, with UUID ids",
    "request-journal": "the request journal keeps paths and queries cut to a bound; reset frees it",
}


def choice_header(choice: str) -> dict[str, str]:
    """The header naming `choice`; a KeyError for a choice the table does not hold."""
    if choice not in CHOICES:
        raise KeyError(f"{choice!r} is not a choice of docs/design/emulator-choices.md")
    return {CHOICE_HEADER: choice}
