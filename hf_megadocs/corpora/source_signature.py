"""What a local source's files contribute to a corpus's cache id: a digest of each file.

``(path, size, mtime)`` misses an edit that keeps the size and puts the mtime back (``cp
-p``, ``rsync -t``, a restore from backup), and the corpus cache then serves the old rows.
So the signature is a blake2b digest of each file's bytes. Hashing a large source on every
``load_dataset`` call would cost a full read, so each digest is memoised on disk, under
``<hf_megadocs cache>/source_digests/``, keyed by the file's (size, mtime_ns, ctime_ns,
inode, device). No edit keeps all five: writing a file updates its ctime, which no user
call can set back (``utime`` itself updates it), and ``rsync``'s rename gives a new inode.
A change of those alone (``chmod``, a copy with the same bytes) costs one re-hash and then
gives the same digest, hence the same cached corpus, which the stat tuple alone would not.
As in git's "racy clean" rule, a file changed in the last :data:`RACY_NS` is hashed but not
memoised: an edit within the same clock tick as the hash could keep even the ctime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from hf_megadocs.generation.embedded import cache_root
from hf_megadocs.generation.sources import EMBEDDED_SOURCES

logger = logging.getLogger(__name__)

READ_BYTES = 1 << 20
"""Bytes read per step while hashing a file."""
RACY_NS = 2_000_000_000
"""A file whose ctime is this recent (or in the future) is not memoised."""


def _stat_key(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


def _memo_path(path: Path) -> Path:
    name = hashlib.blake2b(str(path).encode("utf-8", "surrogateescape"), digest_size=16)
    return cache_root() / "source_digests" / f"{name.hexdigest()}.json"


def _remembered(memo: Path, path: Path, key: list[int]) -> str | None:
    try:
        entry = json.loads(memo.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(entry, dict) and entry.get("path") == str(path) and entry.get("stat") == key:
        digest = entry.get("digest")
        return digest if isinstance(digest, str) else None
    return None


def _remember(memo: Path, path: Path, key: list[int], digest: str) -> None:
    """Write the memo atomically; a cache that cannot be written only costs re-hashing."""
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=memo.parent, delete=False) as out:
            json.dump({"path": str(path), "stat": key, "digest": digest}, out)
        os.replace(out.name, memo)
    except OSError as error:
        logger.debug("Cannot remember the digest of %s: %s", path, error)


def file_digest(path: Path) -> str:
    """blake2b (16 bytes, hex) of ``path``'s bytes, memoised under its stat key."""
    path = path.absolute()
    key = _stat_key(path)
    memo = _memo_path(path)
    remembered = _remembered(memo, path, key)
    if remembered is not None:
        return remembered
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as data:
        while chunk := data.read(READ_BYTES):
            digest.update(chunk)
    settled = time.time_ns() - key[2] > RACY_NS
    if settled and _stat_key(path) == key:  # old enough, and unchanged while it was read
        _remember(memo, path, key, digest.hexdigest())
    return digest.hexdigest()


def source_signature(source: str) -> list[tuple[str, str]]:
    """(path, content digest) of each file of a local source (a file or a folder's files);
    empty for the embedded sources and for Hub datasets."""
    if source in EMBEDDED_SOURCES:
        return []
    path = Path(source).expanduser()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [(str(p), file_digest(p)) for p in files if p.is_file()]


__all__ = ["file_digest", "source_signature"]
