"""utils/views.py: the views of dynamic buttons are not kept alive by discord.py after they are sent."""

from __future__ import annotations

import gc
import weakref

import discord
import pytest
from discord.ui.view import ViewStore

from commands.panel import PanelButton
from commands.queue import QueuePageButton
from utils.views import dynamic_view

pytestmark = pytest.mark.asyncio


def sent_ephemeral(view: discord.ui.View, store: ViewStore, message_id: int) -> weakref.ref:
    """What discord.py does with the view of an ephemeral reply (InteractionResponse.send_message and
    Webhook.send): no timeout becomes 15 minutes, then the view store starts listening. Returns a weak
    reference to the view, which the caller no longer holds."""
    if view.timeout is None:
        view.timeout = 15 * 60.0
    store.add_view(view, message_id)
    return weakref.ref(view)


async def test_a_dynamic_view_is_gone_once_sent_and_its_buttons_stay_routed():
    store = ViewStore(state=None)  # type: ignore[arg-type]  (add_view does not use the state)
    ref = sent_ephemeral(dynamic_view(QueuePageButton(1, 2, "next"), PanelButton("skip")), store, 10)
    gc.collect()
    assert ref() is None  # not kept for 15 minutes
    patterns = {cls for cls in store._dynamic_items.values()}
    assert patterns == {QueuePageButton, PanelButton}  # the buttons are routed by their custom id alone


async def test_a_view_without_a_timeout_would_be_kept_for_its_15_minutes():
    """The behaviour dynamic_view avoids (what commands/queue.py did before): proof the check above can fail."""
    store = ViewStore(state=None)  # type: ignore[arg-type]
    view = discord.ui.View(timeout=None)
    view.add_item(QueuePageButton(1, 2, "next"))
    ref = sent_ephemeral(view, store, 11)
    del view
    gc.collect()
    kept = ref()
    assert kept is not None and kept.timeout == 900.0
    kept.stop()
