"""Fixtures shared by every test directory."""

from __future__ import annotations

import weakref
from typing import Any

import pytest

from sandbox.discord_emulator import DiscordEmulator

# DiscordEmulator -> how many of its 501s (routes it does not emulate) a test has already been failed for.
_reported: weakref.WeakKeyDictionary[DiscordEmulator, int] = weakref.WeakKeyDictionary()


def _emulators(value: Any) -> list[DiscordEmulator]:
    """The emulated Discord behind a fixture value: an emulator, a Sandbox, a Fleet or a Scene."""
    for candidate in (value, getattr(value, "discord", None), getattr(getattr(value, "fleet", None), "discord", None)):
        if isinstance(candidate, DiscordEmulator):
            return [candidate]
    return []


@pytest.fixture(autouse=True)
def _discord_routes_emulated(request: pytest.FixtureRequest):
    """Fail the test that made the bot use a Discord route the sandbox does not emulate (answered 501).

    Leaving a Sandbox or DiscordEmulator fails too; this names the test even when the fleet is shared
    by a whole module.
    """
    yield
    for emu in {id(e): e for v in request.node.funcargs.values() for e in _emulators(v)}.values():
        seen = _reported.get(emu, 0)
        new = emu.unimplemented[seen:]
        _reported[emu] = len(emu.unimplemented)
        if new:
            lines = "\n".join(f"  {u.method} {u.path}: {u.reason}" for u in new)
            pytest.fail(f"this test made the bot use Discord routes the sandbox does not emulate (501):\n{lines}")
