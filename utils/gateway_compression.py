"""Gateway transport compression: the bot always asks Discord for zlib-stream.

discord.py asks for zstd-stream whenever `zstandard` (or Python 3.14's compression.zstd) can be imported, and
has no setting to choose. A zstd stream's decoder keeps, for the whole connection, a window as large as the
server's compressor picked (2 MB at zstd's default level) and writes the decompressed events through all of
it: measured here, +2.4 MB of private memory per bot once ~2 MB of events had arrived, the largest single
part of a forked bot's growth over a 10-minute soak (benchmarks/RESULTS.md, 'Fork server vs exec').
zlib-stream's window is 32 KB. A music bot's gateway traffic (guild and voice-state events, interactions) is
small, so zstd's better ratio saves little bandwidth.

Upstream gap: discord.py reads `discord.utils._ActiveDecompressionContext` (a private name) when it opens
the gateway, for both the URL's `compress=` and the decoder; `use_zlib_stream()` points it at the class
below: discord.py's own zlib-stream decoder (which it defines only when no zstd is importable), except that
the end-of-message marker is looked for at the end of what was buffered, not of the last frame alone.
"""

from __future__ import annotations

import zlib

import discord.utils

ZLIB_SUFFIX = b"\x00\x00\xff\xff"  # Z_SYNC_FLUSH: the end of one gateway message


class ZlibStreamContext:
    """One connection's zlib-stream decoder: frames are buffered until a message's Z_SYNC_FLUSH."""

    __slots__ = ("context", "buffer")

    COMPRESSION_TYPE: str = "zlib-stream"

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.context = zlib.decompressobj()

    def decompress(self, data: bytes, /) -> str | None:
        self.buffer.extend(data)
        if self.buffer[-4:] != ZLIB_SUFFIX:  # (discord.py looks at the frame, missing a suffix split by frames)
            return None  # a message split over several frames: wait for its end
        message = self.context.decompress(self.buffer)
        self.buffer = bytearray()
        return message.decode("utf-8")


def use_zlib_stream() -> None:
    """Make every gateway connection opened from now on ask for, and decode, zlib-stream."""
    discord.utils._ActiveDecompressionContext = ZlibStreamContext  # type: ignore[attr-defined]
