"""Sound effects: the /filter presets and the /speed factor, as the Lavalink filter payloads they send.

Pure data (no wavelink): the player turns `Effects.payload()` into wavelink's Filters (utils/player.py), the
snapshot stores `Effects.to_json()`. A preset and the speed compose: presets that change the pitch with the
tempo (nightcore, vaporwave) use the timescale's `rate`, /speed sets its `speed` (tempo only). Lavalink then
advances the track position at speed x rate per second of wall time (`Effects.rate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MIN_SPEED = 0.5
MAX_SPEED = 2.0

#: Preset -> Lavalink v4 `filters` object (protocol/v4/filters.kt field names). "off" sends none.
PRESETS: dict[str, dict[str, Any]] = {
    "bassboost": {"equalizer": [{"band": 0, "gain": 0.25}, {"band": 1, "gain": 0.2}, {"band": 2, "gain": 0.15},
                                {"band": 3, "gain": 0.1}, {"band": 4, "gain": 0.05}]},
    "nightcore": {"timescale": {"rate": 1.25}},
    "vaporwave": {"timescale": {"rate": 0.8}},
    "8d": {"rotation": {"rotationHz": 0.2}},
    "karaoke": {"karaoke": {"level": 1.0, "monoLevel": 1.0, "filterBand": 220.0, "filterWidth": 100.0}},
    "soft": {"lowPass": {"smoothing": 8.0},
             "equalizer": [{"band": band, "gain": -0.1} for band in range(10, 15)]},
    "tremolo": {"tremolo": {"frequency": 4.0, "depth": 0.75}},
    "vibrato": {"vibrato": {"frequency": 4.0, "depth": 0.75}},
    "lowpass": {"lowPass": {"smoothing": 20.0}},
    "off": {},
}

LABELS: dict[str, str] = {
    "bassboost": "Bass boost", "nightcore": "Nightcore", "vaporwave": "Vaporwave", "8d": "8D audio",
    "karaoke": "Karaoke (vocals removed)", "soft": "Soft", "tremolo": "Tremolo", "vibrato": "Vibrato",
    "lowpass": "Low-pass", "off": "Off",
}


def format_speed(speed: float) -> str:
    """1.5 -> '1.5x', 0.75 -> '0.75x', 1.0 -> '1x'."""
    return f"{speed:.2f}".rstrip("0").rstrip(".") + "x"


@dataclass(frozen=True)
class Effects:
    """What a player applies on top of the music: one preset and a speed factor."""

    preset: str = "off"
    speed: float = 1.0

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown filter preset {self.preset!r}")
        if not MIN_SPEED <= self.speed <= MAX_SPEED:
            raise ValueError(f"speed {self.speed} is outside {MIN_SPEED}-{MAX_SPEED}")

    @property
    def active(self) -> bool:
        return self.preset != "off" or self.speed != 1.0

    @property
    def rate(self) -> float:
        """Track milliseconds per millisecond of wall time: how fast Lavalink moves the position."""
        timescale = self.payload().get("timescale", {})
        return float(timescale.get("speed", 1.0)) * float(timescale.get("rate", 1.0))

    def payload(self) -> dict[str, Any]:
        """The Lavalink `filters` object (a fresh copy): the preset's filters, the speed in the timescale."""
        filters = {name: (list(value) if isinstance(value, list) else dict(value))
                   for name, value in PRESETS[self.preset].items()}
        if self.speed != 1.0:
            filters["timescale"] = {**filters.get("timescale", {}), "speed": self.speed}
        return filters

    def label(self) -> str:
        """'Nightcore · 1.5x speed', 'Bass boost', '0.75x speed' or 'off'."""
        parts = [LABELS[self.preset]] if self.preset != "off" else []
        if self.speed != 1.0:
            parts.append(f"{format_speed(self.speed)} speed")
        return " · ".join(parts) or "off"

    def to_json(self) -> dict[str, Any]:
        return {"preset": self.preset, "speed": self.speed}

    @classmethod
    def from_json(cls, data: Any) -> Effects:
        """From a snapshot; raises ValueError for anything that is not a known preset and an allowed speed."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError("filters must be an object")
        preset, speed = data.get("preset", "off"), data.get("speed", 1.0)
        if not isinstance(preset, str) or isinstance(speed, bool) or not isinstance(speed, (int, float)):
            raise ValueError("filters need a preset name and a numeric speed")
        return cls(preset, float(speed))
