"""One line of a store file: a generation record that carries a checksum of its bytes.

A line written by :class:`~hf_megadocs.generation.store.StoreWriter` is::

    {"crc32":"<8 hex digits>","key":"<32 hex digits>", ...the rest of Generation.to_json()}

followed by a newline. The checksum is zlib's CRC-32 of every byte after the ``crc32``
field (from ``"key"`` to the newline, included), so a reader checks a line without parsing
it, and the key sits at a fixed place right after it. ``crc32`` is left out of the
:class:`~hf_megadocs.records.Generation` a line decodes to: a record reads back exactly
as it was written. Lines written before checksums existed (no ``crc32`` field) are still
read, parsed and checked for their key: they are *unverified*.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from hf_megadocs.records import Generation

CHECKSUM_FIELD = "crc32"
PREFIX = b'{"crc32":"'
HEAD = len(PREFIX) + 8 + 2
"""Bytes before the checksummed part: ``{"crc32":"xxxxxxxx",``."""
KEY_FIELD = b'"key":"'


class DamagedLine(ValueError):
    """A store line that does not read back as the record it should be."""


class WrongKey(DamagedLine):
    """An intact record, but not the one asked for: the index points at another line."""


def encode(record: dict[str, Any]) -> bytes:
    """The store line of ``record`` (``Generation.to_json()``), its key first."""
    record = {"key": record["key"], **record}
    body = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    checked = (body[1:] + "\n").encode("utf-8")
    return b'%s%08x",%s' % (PREFIX, zlib.crc32(checked), checked)


def verify(line: bytes, key: str | None = None) -> bool:
    """Check a line's checksum and, given ``key``, that it holds that key, without parsing.

    Returns False for a line without a checksum (written before checksums; its key is
    not checked here: :func:`decode` does). Raises :class:`DamagedLine` (or
    :class:`WrongKey`) when the line is not intact.
    """
    if not line.endswith(b"\n"):
        raise DamagedLine("the line ends without its newline")
    if not line.startswith(PREFIX):
        return False
    try:
        stored = int(line[len(PREFIX) : HEAD - 2], 16)
    except ValueError:
        stored = -1
    if line[HEAD - 2 : HEAD] != b'",' or zlib.crc32(memoryview(line)[HEAD:]) != stored:
        raise DamagedLine("its checksum does not match its content")
    if key is not None:
        start = HEAD + len(KEY_FIELD)
        if line[HEAD:start] != KEY_FIELD:
            raise DamagedLine("its key is not where the writer puts it")
        found = line[start : start + 32]
        if found != key.encode("ascii"):
            raise WrongKey(f"it holds key {found.decode('ascii', 'replace')}, not {key}")
    return True


def decode(line: bytes, key: str | None = None) -> tuple[Generation, bool]:
    """The generation on ``line`` and whether its checksum was verified.

    Raises :class:`DamagedLine` when the line fails its checksum, is not a generation
    record, or (given ``key``) holds another key (:class:`WrongKey`).
    """
    checked = verify(line, key)
    try:
        record = json.loads(line)
        if record.pop(CHECKSUM_FIELD, None) is not None and not checked:
            raise ValueError("a checksum where none can be checked (the line was rewritten)")
        generation = Generation.from_json(record)
        if len(bytes.fromhex(generation.key)) != 16:
            raise ValueError(f"malformed key {generation.key!r}")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise DamagedLine(f"it is not a generation record ({type(err).__name__}: {err})") from None
    if key is not None and generation.key != key:
        raise WrongKey(f"it holds key {generation.key}, not {key}")
    return generation, checked


__all__ = ["CHECKSUM_FIELD", "DamagedLine", "WrongKey", "decode", "encode", "verify"]
