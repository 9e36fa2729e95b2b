"""The ``filters`` of a player PATCH, read as Lavalink 4 reads them (pure, no I/O).

Lavalink deserialises the object into its protocol ``Filters`` class with ``ignoreUnknownKeys``: unknown
top-level keys and unknown fields inside a filter are dropped, omitted fields get their defaults, a filter
set to null is off. ``pluginFilters`` only keeps the keys of installed filter plugins (this node has none).
What the player answers is ``FilterChain.toFilters()``: the known filters that were given, every field
filled in. A value of the wrong type fails the whole request body (400 "Failed to read request").
"""

from __future__ import annotations

from typing import Any

#: Filter name -> field defaults (lavalink-devs/Lavalink protocol/v4/filters.kt).
FILTER_FIELDS: dict[str, dict[str, float]] = {
    "karaoke": {"level": 1.0, "monoLevel": 1.0, "filterBand": 220.0, "filterWidth": 100.0},
    "timescale": {"speed": 1.0, "pitch": 1.0, "rate": 1.0},
    "tremolo": {"frequency": 2.0, "depth": 0.5},
    "vibrato": {"frequency": 2.0, "depth": 0.5},
    "distortion": {"sinOffset": 0.0, "sinScale": 1.0, "cosOffset": 0.0, "cosScale": 1.0, "tanOffset": 0.0,
                   "tanScale": 1.0, "offset": 0.0, "scale": 1.0},
    "rotation": {"rotationHz": 0.0},
    "channelMix": {"leftToLeft": 1.0, "leftToRight": 0.0, "rightToLeft": 0.0, "rightToRight": 1.0},
    "lowPass": {"smoothing": 20.0},
}
FILTER_NAMES = ("volume", "equalizer", *FILTER_FIELDS)


class FilterError(ValueError):
    """The filters object does not deserialise (a field has the wrong JSON type)."""


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FilterError(f"not a number: {value!r}")
    return float(value)


def _band(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or isinstance(value.get("band"), bool) or not isinstance(value.get("band"), int):
        raise FilterError(f"not an equalizer band: {value!r}")
    return {"band": value["band"], "gain": _number(value.get("gain", 1.0))}


def parse_filters(raw: dict[str, Any]) -> dict[str, Any]:
    """The filter set a player holds after ``{"filters": raw}``, as Lavalink reports it back."""
    parsed: dict[str, Any] = {}
    if "volume" in raw:
        parsed["volume"] = _number(raw["volume"])  # not nullable in Lavalink's Filters
    if raw.get("equalizer") is not None:
        if not isinstance(raw["equalizer"], list):
            raise FilterError("equalizer is not a list")
        parsed["equalizer"] = [_band(band) for band in raw["equalizer"]]
    for name, defaults in FILTER_FIELDS.items():
        value = raw.get(name)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise FilterError(f"{name} is not an object")
        parsed[name] = {key: _number(value.get(key, default)) for key, default in defaults.items()}
    if not isinstance(raw.get("pluginFilters", {}), dict):
        raise FilterError("pluginFilters is not an object")
    return parsed
