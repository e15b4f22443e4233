"""Recorded Postscript interactions and the harness that replays, verifies and records them.

A contract is one JSON file in `contracts/recorded/`, one interaction each:

    {
      "name": "subscribers.get",                      unique; the file is <name>.json
      "description": "Get one subscriber by its opaque id.",
      "provenance": {"source": "docs", "page": "https://developers.postscript.io/reference/get-subscriber"},
                    or {"source": "live", "recorded_at": "2026-11-26"}
      "behaviour": "documented",                      or the emulator's choice the answer
                                                      follows (docs/design/emulator-choices.md),
                                                      e.g. "not-found-3001"
      "given": {                                      the state the request needs
        "subscribers": [{"ref": "alice", "phone_number": "+15555550100",
                         "email": "alice@example.com", "properties": {...}}],
                        ("copies": 101 seeds the same subscriber 101 times)
        "faults": {"error_rate": 1.0, "error_statuses": [503], "seed": 1},
        "rate_limit_exceeded": true,                  send bursts until a 429 comes back
        "partner_forbidden": ["compliance"]           operation groups the partner may not call
      },
      "refs": {"subscriber.alice.id": "s_3f2a..."},   recorded values of references
      "request": {"method": "GET", "path": "/api/v2/subscribers/{{subscriber.alice.id}}",
                  "query": {"email__in": ["alice@example.com"]}, "json": null,
                  "auth": "valid" | "invalid" | "none" | "partner" | "partner_without_shop"
                          | "public"   (optional, default valid: the shop's own key)},
      "response": {"status": 200, "body": {...}},
      "matchers": {"$.id": {"ref": "subscriber.alice.id"}, "$.created_at": {"type": "datetime"}},
      "live": {"skip": "why not live"} or {"event_type": "a type that starts no flow"},
      "replay": {"skip": "why the client's tests need not use it"}
    }

`{{subscriber.alice.id}}` is a reference: against the emulator it is the id the
admin surface gave the subscriber seeded as `alice`; against a live shop, the
id of the test subscriber; in replay, the value under `refs`. Matchers (see
`contracts.matching`) let values that differ between runs match by type, and
make one id seen twice match itself.

The harness:
- `contracts.replay.replay(*names)` — a respx router answering from the contracts;
- `contracts.verify` — send each request to the emulator (or a base URL) after
  setting up `given`, report every difference per contract;
- `contracts.record` — run them against a live shop, rewrite the files scrubbed;
- `contracts.drift` — where the emulator and a live shop disagree.
`pslab contracts list|verify|record|drift` fronts them (`contracts.cli`).
"""

from postscript_audience_lab.contracts.contract import RECORDED, Contract, load_contracts

# `contracts.replay` is not re-exported: it needs respx (the `testing` extra),
# which `pslab contracts verify` must run without.
__all__ = ["RECORDED", "Contract", "load_contracts"]
