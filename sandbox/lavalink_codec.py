"""lavaplayer's encoded track format, as a real Lavalink v4 node puts it in ``encoded`` (pure, no I/O).

The layout follows lavaplayer's DefaultAudioPlayerManager.encodeTrack/decodeTrack and MessageOutput/
MessageInput (checked against lavalink-devs/lavaplayer): one message, standard base64 (``+``, ``/``, ``=``):

- a 4-byte big-endian header ``size | flags << 30``; flag 1 means "versioned" (a version byte follows);
- version byte (3 today; an unversioned message is version 1);
- ``writeUTF`` title, author; ``writeLong`` length; ``writeUTF`` identifier; ``writeBoolean`` isStream;
- nullable texts (a boolean "present", then ``writeUTF``): uri (version >= 2), artworkUrl and isrc (>= 3);
- ``writeUTF`` sourceName, then what that source manager writes (http and local: the container probe name,
  ``probe|parameters``; youtube, soundcloud and the other built-in sources: nothing);
- ``writeLong`` position.

``writeUTF`` is Java's DataOutput: a 2-byte length, then modified UTF-8 (NUL as two bytes, characters
outside the BMP as two 3-byte surrogates). Decoding errors carry the message Java would put in the exception
that Lavalink turns into its error answer.
"""

from __future__ import annotations

import base64
import re
import struct
from dataclasses import dataclass

TRACK_INFO_VERSIONED = 1
TRACK_INFO_VERSION = 3
#: Sources whose lavaplayer manager writes a container probe (``ProbingAudioSourceManager``).
PROBING_SOURCES = frozenset({"http", "local"})
#: lavaplayer's container probe names (MediaContainerProbe.getName()).
CONTAINER_PROBES = frozenset({"adts", "flac", "m3u", "matroska/webm", "mp3", "mp4", "mpegts-adts", "ogg",
                              "plain", "pls", "wav"})
_BASE64_CHARS = re.compile(r"[^A-Za-z0-9+/=]")


class TrackDecodeError(ValueError):
    """An ``encoded`` string lavaplayer cannot decode; ``str()`` is the Java exception's message."""


@dataclass(frozen=True)
class EncodedTrack:
    """The fields of one encoded track message."""

    title: str
    author: str
    length: int
    identifier: str
    is_stream: bool
    uri: str | None
    artwork_url: str | None
    isrc: str | None
    source_name: str
    probe: str | None = None  # the http/local source's container probe info
    position: int = 0
    version: int = TRACK_INFO_VERSION


# -- Java DataOutput / DataInput ----------------------------------------------------------------------------

def _modified_utf8(text: str) -> bytes:
    units = text.encode("utf-16-be", "surrogatepass")
    out = bytearray()
    for (unit,) in struct.iter_unpack(">H", units):
        if 0x0001 <= unit <= 0x007F:
            out.append(unit)
        elif unit <= 0x07FF:
            out += bytes((0xC0 | unit >> 6, 0x80 | unit & 0x3F))
        else:
            out += bytes((0xE0 | unit >> 12, 0x80 | unit >> 6 & 0x3F, 0x80 | unit & 0x3F))
    return bytes(out)


def write_utf(text: str) -> bytes:
    data = _modified_utf8(text)
    if len(data) > 0xFFFF:
        raise ValueError(f"encoded string too long: {len(data)} bytes")
    return struct.pack(">H", len(data)) + data


class _Reader:
    """DataInputStream over one bounded message: running out of bytes is Java's EOFException."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, count: int) -> bytes:
        if self.at + count > len(self.data):
            raise TrackDecodeError("")  # EOFException has no message
        chunk = self.data[self.at:self.at + count]
        self.at += count
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def boolean(self) -> bool:
        return self.byte() != 0

    def long(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def utf(self) -> str:
        (size,) = struct.unpack(">H", self.take(2))
        raw = self.take(size)
        units: list[int] = []
        i = 0
        while i < size:
            b = raw[i]
            if b < 0x80:
                units.append(b)
                i += 1
            elif b >> 5 == 0b110:
                if i + 2 > size:
                    raise TrackDecodeError("malformed input: partial character at end")
                if raw[i + 1] >> 6 != 0b10:
                    raise TrackDecodeError(f"malformed input around byte {i + 1}")
                units.append((b & 0x1F) << 6 | raw[i + 1] & 0x3F)
                i += 2
            elif b >> 4 == 0b1110:
                if i + 3 > size:
                    raise TrackDecodeError("malformed input: partial character at end")
                if raw[i + 1] >> 6 != 0b10 or raw[i + 2] >> 6 != 0b10:
                    raise TrackDecodeError(f"malformed input around byte {i + 2}")
                units.append((b & 0x0F) << 12 | (raw[i + 1] & 0x3F) << 6 | raw[i + 2] & 0x3F)
                i += 3
            else:
                raise TrackDecodeError(f"malformed input around byte {i}")
        return struct.pack(f">{len(units)}H", *units).decode("utf-16-be", "surrogatepass")

    def nullable_utf(self) -> str | None:
        return self.utf() if self.boolean() else None


# -- base64 (java.util.Base64.getDecoder(), the strict RFC 4648 decoder) -----------------------------------

def _java_base64_decode(text: str) -> bytes:
    bad = _BASE64_CHARS.search(text)
    if bad is not None:
        raise TrackDecodeError(f"Illegal base64 character {ord(bad.group()):x}")
    body, _, padding = text.partition("=")
    if padding.strip("="):
        raise TrackDecodeError(f"Input byte array has incorrect ending byte at {len(body) + 1}")
    if len(body) % 4 == 1:
        raise TrackDecodeError("Last unit does not have enough valid bits")
    if padding and (len(body) + 1 + len(padding)) % 4:
        raise TrackDecodeError("Input byte array has wrong 4-byte ending unit")
    return base64.b64decode(body + "=" * (-len(body) % 4))


# -- the message --------------------------------------------------------------------------------------------

def encode(track: EncodedTrack) -> str:
    """``track`` as lavaplayer's versioned track message, in standard base64."""
    body = bytearray((track.version,))
    body += write_utf(track.title) + write_utf(track.author) + struct.pack(">q", track.length)
    body += write_utf(track.identifier) + struct.pack(">?", track.is_stream)
    for text in (track.uri, track.artwork_url, track.isrc):
        body += b"\x00" if text is None else b"\x01" + write_utf(text)
    body += write_utf(track.source_name)
    if track.source_name in PROBING_SOURCES:
        body += write_utf(track.probe or "mp3")
    body += struct.pack(">q", track.position)
    header = struct.pack(">I", len(body) | TRACK_INFO_VERSIONED << 30)
    return base64.b64encode(header + bytes(body)).decode("ascii")


def decode(encoded: str, sources: frozenset[str] | set[str]) -> EncodedTrack:
    """Read one track message as lavaplayer does, with the source managers named in ``sources``.

    Raises :class:`TrackDecodeError`; its message is empty for Java's EOFException and
    ``MISSING_SOURCE`` when lavaplayer returns no track (unknown source manager or container probe).
    """
    reader = _Reader(_java_base64_decode(encoded))
    (value,) = struct.unpack(">I", reader.take(4))
    flags, size = value >> 30, value & 0x3FFFFFFF
    if size == 0:
        raise TrackDecodeError("")  # MessageInput.nextMessage() returns null; Lavalink then hits a null
    message = _Reader(reader.data[4:4 + size])  # bounded: reading past it, or past a short buffer, is EOF
    version = message.byte() if flags & TRACK_INFO_VERSIONED else 1
    title, author, length = message.utf(), message.utf(), message.long()
    identifier, is_stream = message.utf(), message.boolean()
    uri = message.nullable_utf() if version >= 2 else None
    artwork_url = message.nullable_utf() if version >= 3 else None
    isrc = message.nullable_utf() if version >= 3 else None
    source_name = message.utf()
    probe = None
    if source_name not in sources:
        raise TrackDecodeError(MISSING_SOURCE)
    if source_name in PROBING_SOURCES:
        probe = message.utf()
        if probe.partition("|")[0] not in CONTAINER_PROBES:
            raise TrackDecodeError(MISSING_SOURCE)
    position = message.long()
    return EncodedTrack(title, author, length, identifier, is_stream, uri, artwork_url, isrc, source_name,
                        probe, position, version)


#: Lavalink's util.kt decodeTrack(): lavaplayer gave no track back.
MISSING_SOURCE = "Failed to decode track due to a mismatching version or missing source manager"
