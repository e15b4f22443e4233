"""The project's own packages stay its own with postscript-audience-lab installed, and the
pytest plugin's fixtures still serve Postscript to them."""

from __future__ import annotations

import lab

import contracts
import emulator
import sync
from postscript_audience_lab.emulator.testing import Postscript


def test_the_projects_own_packages_are_the_ones_imported() -> None:
    assert {emulator.OWNER, sync.OWNER, contracts.OWNER, lab.OWNER} == {"crowded-names"}
    assert emulator.in_stock("SKU-1")
    assert contracts.CARRIERS == ("UPS", "DHL")


def test_the_projects_sync_reaches_the_emulated_postscript(mock_postscript: Postscript) -> None:
    mock_postscript.seed(phone_number="+15555550100")

    assert sync.order_shipped(mock_postscript.secret_key, "+15555550100", "#1001") < 300

    (event,) = mock_postscript.events
    assert (event.type, event.phone, event.external_id) == (
        "order_shipped",
        "+15555550100",
        "#1001",
    )
