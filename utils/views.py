"""Views of buttons that are all DynamicItems: the panel's, /queue's and /lyrics' page buttons."""

from __future__ import annotations

import discord


def dynamic_view(*items: discord.ui.Item) -> discord.ui.View:
    """A View that only carries `items` to Discord: every one is a DynamicItem, routed by its custom id
    (the cogs register their classes with add_dynamic_items), so nothing needs this object afterwards.

    timeout=0, not None: both mean no timeout to discord.py, but it gives an *ephemeral* message's view
    with timeout None 15 minutes (the interaction token's life) and keeps the view, its items and a timer
    alive that long, though nothing is ever dispatched through it - at 300 /queue and /nowplaying an hour,
    thousands of dead views per bot. With 0 it keeps none."""
    view = discord.ui.View(timeout=0)
    for item in items:
        view.add_item(item)
    return view
