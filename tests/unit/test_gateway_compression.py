"""utils/gateway_compression.py: the bot asks for zlib-stream and decodes it as Discord sends it."""

from __future__ import annotations

import json
import zlib

import discord.utils

from utils.gateway_compression import ZlibStreamContext, use_zlib_stream


def zlib_stream_frames(messages: list[dict]) -> list[bytes]:
    """What Discord sends on a zlib-stream connection: one compressor, each message ended by Z_SYNC_FLUSH."""
    compressor = zlib.compressobj()
    return [compressor.compress(json.dumps(m).encode()) + compressor.flush(zlib.Z_SYNC_FLUSH) for m in messages]


def test_decodes_a_stream_of_messages_and_messages_split_over_frames():
    messages = [{"op": 10, "d": {"heartbeat_interval": 41250}},
                {"op": 0, "t": "READY", "s": 1, "d": {"session_id": "x" * 5000}},
                {"op": 11, "d": None}]
    first, ready, ack = zlib_stream_frames(messages)
    context = ZlibStreamContext()

    assert json.loads(context.decompress(first)) == messages[0]
    # a large message may come in several frames: nothing until the one that ends with Z_SYNC_FLUSH
    parts = [ready[:7], ready[7:-2], ready[-2:]]
    assert context.decompress(parts[0]) is None
    assert context.decompress(parts[1]) is None
    assert json.loads(context.decompress(parts[2])) == messages[1]
    # the stream goes on with the same window: back-references into earlier messages decode
    assert json.loads(context.decompress(ack)) == messages[2]


def test_use_zlib_stream_makes_discord_py_ask_for_and_decode_zlib_stream(monkeypatch):
    monkeypatch.setattr(discord.utils, "_ActiveDecompressionContext", discord.utils._ActiveDecompressionContext)
    use_zlib_stream()
    # discord.gateway reads both of these when it opens a connection (the URL's compress= and its decoder)
    assert discord.utils._ActiveDecompressionContext.COMPRESSION_TYPE == "zlib-stream"
    (frame,) = zlib_stream_frames([{"op": 11, "d": None}])
    assert json.loads(discord.utils._ActiveDecompressionContext().decompress(frame)) == {"op": 11, "d": None}
