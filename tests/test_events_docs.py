"""docs/events.md names every declared event type, its fields, and every reaction to it."""

from __future__ import annotations

from pathlib import Path

from engine.events import CATALOGUE
from engine.ray_host import load_kind
from engine.relay import subscriptions
from serve.kinds import KINDS

DOC = (Path(__file__).resolve().parent.parent / "docs" / "events.md").read_text()


def test_the_catalogue_lists_every_event_with_its_fields_and_version():
    kinds = [load_kind(path) for path in KINDS]  # importing the kinds declares their events
    assert kinds
    arena = {name: event for name, event in CATALOGUE.items() if not name.startswith(("test.", "bench."))}
    assert arena, "no event declared"
    for name, event in arena.items():
        row = next((line for line in DOC.splitlines() if line.startswith(f"| `{name}` ")), None)
        assert row is not None, f"docs/events.md has no row for {name}"
        assert f"| {event.version} |" in row, f"{name}: the row does not give version {event.version}"
        for field in event.fields:
            assert f"`{field}`" in row, f"{name}: the row does not list the field {field}"


def test_the_catalogue_lists_every_reaction():
    for sub in subscriptions([load_kind(path) for path in KINDS]):
        assert f"`{sub.name}`" in DOC, f"docs/events.md does not name the reaction {sub.name}"
