"""Fault: a store file or its index damaged on disk (a flipped bit, a hand edit).

Before every read was verified, one damaged record under a valid index made every build
crash with a bare JSONDecodeError (no file, no offset) while the store's health said
"0 corrupt" and ``generate`` said everything was cached; swapped index keys silently served
one document's rephrases for another's; a changed text byte that kept the JSON valid was
served as it was; a damaged index key hid a duplicate from the store's counts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

import hf_megadocs  # noqa: F401  (registers the builder)
from hf_megadocs.generation.store import GenerationStore
from hf_megadocs.generation.store_index import ENTRY
from tests.generation.test_store import gen

BUILD = {"backend": "dummy", "max_docs": 8, "max_new_tokens": 8, "validation_fraction": 0.0}


def build(tmp_path: Path, cache: str) -> list[dict]:
    """The stitched_g2 train rows, built into a cache of their own (so each call builds)."""
    import datasets

    corpus = datasets.load_dataset(
        "hf_megadocs",
        "stitched_g2",
        store_dir=str(tmp_path / "store"),
        cache_dir=str(tmp_path / cache),
        **BUILD,
    )
    return corpus["train"].to_list()


def store_files(tmp_path: Path) -> tuple[Path, Path]:
    """The store's one JSONL file and its index."""
    (jsonl,) = (tmp_path / "store" / "generations").glob("*.jsonl")
    return jsonl, tmp_path / "store" / "index" / f"{jsonl.stem}.idx"


def entries(idx: Path) -> np.ndarray:
    return np.fromfile(idx, dtype=ENTRY)


def last_run(tmp_path: Path) -> dict:
    return GenerationStore(tmp_path / "store").runs()[-1]["summary"]


def warnings_naming(caplog: pytest.LogCaptureFixture, path: Path, offset: int) -> list[str]:
    """The WARNINGs that name ``path`` and byte ``offset``."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING
        and str(path) in r.getMessage()
        and f"byte {offset}" in r.getMessage()
    ]


def damage_line(jsonl: Path, offset: int, old: bytes, new: bytes) -> None:
    """Replace the first ``old`` in the line at ``offset`` with ``new`` (same length)."""
    assert len(old) == len(new)
    data = bytearray(jsonl.read_bytes())
    at = data.index(old, offset)
    data[at : at + len(old)] = new
    jsonl.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "old, new",
    [(b'"source_id"', b"'source_id\""), (b'"text":"', b'"text":"~')],
    ids=["flipped_quote", "text_byte_keeping_json_valid"],
)
def test_a_damaged_record_is_regenerated_once_and_reported_once(tmp_path, caplog, old, new):
    first = build(tmp_path, "cache1")
    jsonl, idx = store_files(tmp_path)
    stored = entries(idx)
    middle = len(stored) // 2
    offset, key = int(stored["offset"][middle]), stored["key"][middle].hex()
    if new.endswith(b"~"):  # keep the length and the JSON: change the text's first letter
        old = old + jsonl.read_bytes()[offset:].split(old, 1)[1][:1]
        new = new[:-1] + (b"Z" if old[-1:] != b"Z" else b"Y")
    damage_line(jsonl, offset, old, new)
    caplog.set_level(logging.INFO)

    again = build(tmp_path, "cache2")

    assert again == first  # the regenerated record is the same (dummy outputs are seeded)
    summary = last_run(tmp_path)
    assert summary["generated"] == 1 and summary["cached"] == len(stored) - 1
    assert jsonl.read_bytes().count(key.encode()) == 2  # the damaged line and one new one
    assert len(warnings_naming(caplog, jsonl, offset)) == 1
    store = GenerationStore(tmp_path / "store")
    assert store.stats()["corrupt_lines"] == 1 and store.stats()["duplicates"] == 0
    assert "0 duplicate, 0 torn, 1 corrupt line(s) skipped" in store.health()
    assert store.get(key) is not None and len(store) == len(stored)


@pytest.mark.parametrize("bit", [0, 4], ids=["newline_dropped", "16_bytes_short"])
def test_a_damaged_index_entry_length_is_rebuilt_from_the_jsonl(tmp_path, caplog, bit):
    first = build(tmp_path, "cache1")
    jsonl, idx = store_files(tmp_path)
    stored = entries(idx)
    # a middle entry whose length has that bit set: flipping it makes the entry shorter
    middle = next(
        i for i in range(len(stored) // 2, len(stored) - 1) if stored["length"][i] >> bit & 1
    )
    damaged = stored.copy()
    damaged["length"][middle] ^= 1 << bit
    damaged.tofile(idx)
    caplog.set_level(logging.INFO)

    again = build(tmp_path, "cache2")

    assert again == first
    assert last_run(tmp_path)["generated"] == 0  # the record itself was intact
    assert len(warnings_naming(caplog, jsonl, int(stored["offset"][middle]))) == 1
    assert np.array_equal(entries(idx), stored)  # the index on disk is whole again
    assert GenerationStore(tmp_path / "store").stats()["corrupt_lines"] == 0


def test_swapped_index_keys_are_detected_and_never_served_swapped(tmp_path, caplog):
    first = build(tmp_path, "cache1")
    jsonl, idx = store_files(tmp_path)
    stored = entries(idx)
    a, b = len(stored) // 3, 2 * len(stored) // 3
    damaged = stored.copy()
    damaged["key"][[a, b]] = stored["key"][[b, a]]
    damaged.tofile(idx)
    caplog.set_level(logging.INFO)

    again = build(tmp_path, "cache2")

    assert again == first  # before: two documents got each other's rephrases
    assert last_run(tmp_path)["generated"] == 0
    assert len(warnings_naming(caplog, jsonl, int(stored["offset"][a]))) == 1
    assert np.array_equal(entries(idx), stored)
    store = GenerationStore(tmp_path / "store")
    key_a = stored["key"][a].hex()
    assert store.get(key_a).key == key_a and store.stats()["corrupt_lines"] == 0


def test_reads_through_the_store_api_verify_checksum_and_key(tmp_path, caplog):
    root = tmp_path / "s"
    with GenerationStore(root).writer() as writer:
        writer.append([gen(i) for i in range(10)])
    jsonl = next((root / "generations").glob("*.jsonl"))
    stored = np.fromfile(root / "index" / f"{jsonl.stem}.idx", dtype=ENTRY)
    offset = int(stored["offset"][4])
    damage_line(jsonl, offset, b"text 4", b"text 5")  # valid JSON, the wrong text
    store = GenerationStore(root)
    assert store.get_many([f"{i:032x}" for i in range(10)]).keys() == {
        f"{i:032x}" for i in range(10) if i != 4
    }
    assert len(warnings_naming(caplog, jsonl, offset)) == 1
    assert "checksum" in warnings_naming(caplog, jsonl, offset)[0]
    assert store.get(f"{4:032x}") is None and f"{4:032x}" not in store  # missing: regenerated
    assert store.stats()["corrupt_lines"] == 1 and len(store) == 9
    assert len(warnings_naming(caplog, jsonl, offset)) == 1  # said once, not at every read
    assert GenerationStore(root).stats()["corrupt_lines"] == 1  # the rebuilt index says so
    # a line rewritten by hand keeps a checksum that can no longer be checked: damaged too
    lines = jsonl.read_bytes().split(b"\n")
    record = json.loads(lines[7])
    lines[7] = json.dumps({**record, "text": "edited"}, ensure_ascii=False).encode()
    jsonl.write_bytes(b"\n".join(lines))
    assert GenerationStore(root).get(f"{7:032x}") is None


def test_an_old_record_without_checksum_is_read_and_counted_unverified(tmp_path, caplog):
    root = tmp_path / "s"
    (root / "generations").mkdir(parents=True)
    old = root / "generations" / "shard-0-of-1-oldhost-1.jsonl"
    lines = [json.dumps(gen(i).to_json(), ensure_ascii=False) for i in range(5)]
    lines[2] = lines[2].replace('"source_id"', "'source_id\"", 1)  # damaged, no checksum
    old.write_text("\n".join(lines) + "\n", encoding="utf-8")
    store = GenerationStore(root)
    assert store.get(f"{1:032x}") == gen(1) and f"{2:032x}" not in store
    assert store.stats()["unverified"] == 4 and store.stats()["corrupt_lines"] == 1
    assert "4 unverified (written without checksum)" in store.health()
    with store.writer() as writer:
        writer.append([gen(2), gen(7)])
    reopened = GenerationStore(root)  # from the persisted index of both files
    assert reopened.stats()["unverified"] == 4 and len(reopened) == 6
    assert reopened.get(f"{2:032x}") == gen(2) and reopened.get(f"{3:032x}") == gen(3)
    assert (  # an old record is still checked for its key
        reopened.get_many([f"{i:032x}" for i in (0, 1, 3, 4)]).keys()
        == {f"{i:032x}" for i in (0, 1, 3, 4)}
    )


def test_duplicates_are_counted_from_the_data_not_the_index(tmp_path):
    root = tmp_path / "s"
    with GenerationStore(root).writer() as writer:
        writer.append([gen(i) for i in range(6)])
        writer.append([gen(3, text="paid twice"), gen(6)])  # key 3 generated again
    idx = next((root / "index").glob("*.idx"))
    stored = np.fromfile(idx, dtype=ENTRY)
    assert GenerationStore(root).duplicates == 1
    damaged = stored.copy()
    damaged["key"][6] = bytes(16 * [0xAB])  # the second key 3 in the index only
    damaged.tofile(idx)
    store = GenerationStore(root)
    seen = [g.key for g in store.iter_generations()]  # a pass over every record (the card)
    assert sorted(seen) == [f"{i:032x}" for i in range(7)]  # before: key 3 came twice
    assert store.duplicates == 1 and len(store) == 7 and "ab" * 16 not in store
    assert store.get(f"{3:032x}") == gen(3)  # the first occurrence wins, as in the data
    assert GenerationStore(root).duplicates == 1  # and the rebuilt index agrees
