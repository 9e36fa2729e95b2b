"""The bot's cogs. EXTENSIONS is the single list both bot.py and register_commands.py load."""

EXTENSIONS: tuple[str, ...] = (
    "commands.meta",
    "commands.playback",
    "commands.queue",
    "commands.effects",
    "commands.lyrics",
    "commands.panel",
    "commands.persistence",
    "commands.watchdog",
    "commands.recovery",
    "commands.votes",
    "commands.stay",
    "commands.search",
)
