"""Helpers shared by bot.py and the cogs. Never imports `commands/` or `sandbox/`."""
