"""The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, the payload."""

from __future__ import annotations

import struct

MAGIC = 0
HEADER = struct.Struct(">bI")
HEADER_SIZE = HEADER.size  # 5


class WireError(ValueError):
    """Bytes that are not in the wire format; the message says why."""


def schema_id_of(raw: bytes) -> int:
    """The schema id a message names; WireError when it has no wire-format header."""
    if len(raw) < HEADER_SIZE or raw[0] != MAGIC:
        first = f"0x{raw[0]:02x}" if raw else "an empty value"
        raise WireError(
            f"not in the schema registry wire format (expected magic byte 0x00 and a 4-byte "
            f"schema id; got {first}, {len(raw)} bytes)"
        )
    return int.from_bytes(raw[1:HEADER_SIZE], "big")


def frame(schema_id: int, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, schema_id) + payload
