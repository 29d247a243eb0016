"""The store's persisted index: used when valid, rebuilt from the JSONL when not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hf_megadocs.generation.store import GenerationStore
from hf_megadocs.generation.store_index import ENTRY, FileIndex
from hf_megadocs.generation.store_keys import KeyTable
from tests.generation.test_store import gen


def flagged(i):
    return gen(i, flags=("truncated",) if i % 3 == 0 else ())


def filled(root, n=40, batches=4):
    store = GenerationStore(root)
    with store.writer() as writer:
        for start in range(0, n, n // batches):
            writer.append([flagged(i) for i in range(start, start + n // batches)])
    return store


def no_parsing(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("a JSONL line was parsed although the index covers it")

    monkeypatch.setattr(FileIndex, "_entry", refuse)


def only_file(root, pattern):
    (path,) = (root / "index").glob(pattern)
    return path


def test_a_writer_persists_its_index_and_a_cold_open_reads_only_it(tmp_path, monkeypatch):
    written = filled(tmp_path / "s")
    idx = only_file(tmp_path / "s", "*.idx")
    assert idx.stat().st_size == 40 * ENTRY.itemsize
    no_parsing(monkeypatch)
    cold = GenerationStore(tmp_path / "s")
    assert cold.keys() == written.keys() and len(cold) == 40
    assert cold.stats() == written.stats()
    assert cold.stats()["flags"] == {"truncated": 14} and cold.stats()["by_prompt"] == {"wiki": 40}
    assert cold.get(f"{7:032x}") == gen(7)
    assert cold.contains([f"{3:032x}", f"{99:032x}"]).tolist() == [True, False]


@pytest.mark.parametrize("damage", ["deleted", "torn_entry", "wrong_key", "labels_deleted"])
def test_a_missing_or_damaged_index_is_rebuilt_with_the_same_keys(tmp_path, damage, caplog):
    root = tmp_path / "s"
    written = filled(root)
    idx = only_file(root, "*.idx")
    if damage == "deleted":
        idx.unlink()
    elif damage == "torn_entry":
        with idx.open("r+b") as handle:
            handle.truncate(idx.stat().st_size - 7)
    elif damage == "wrong_key":
        entries = np.fromfile(idx, dtype=ENTRY)
        entries["key"][-1] = bytes(16 * [0xAB])
        entries.tofile(idx)
    else:
        only_file(root, "*.labels.jsonl").unlink()
    reopened = GenerationStore(root)
    assert reopened.keys() == written.keys() and reopened.stats() == written.stats()
    assert reopened.get(f"{39:032x}") == flagged(39)
    # the rebuilt index is whole again: a third open parses nothing
    assert np.fromfile(only_file(root, "*.idx"), dtype=ENTRY).size == 40
    if damage in ("wrong_key", "labels_deleted"):
        assert "Rebuilding the index" in caplog.text


def test_lines_after_the_index_and_a_torn_tail_are_read_from_the_jsonl(tmp_path, caplog):
    root = tmp_path / "s"
    written = filled(root)
    (jsonl,) = (root / "generations").glob("*.jsonl")
    with jsonl.open("ab") as handle:  # a writer killed after its fsync, before its index write
        handle.write((json.dumps(gen(100).to_json()) + "\n").encode())
        handle.write(b'{"key": "0000')  # ... and one killed mid-line
    reopened = GenerationStore(root)
    assert reopened.keys() == written.keys() | {f"{100:032x}"}
    assert reopened.stats()["torn_lines"] == 1 and "incomplete last line" in caplog.text
    assert np.fromfile(only_file(root, "*.idx"), dtype=ENTRY).size == 41  # caught up on disk
    with reopened.writer() as writer:  # a later writer of that file ends the torn line
        writer.append([gen(101)])
    final = GenerationStore(root)
    assert len(final) == 42 and final.stats()["corrupt_lines"] == 1
    assert final.stats()["torn_lines"] == 0


def test_a_store_whose_index_cannot_be_written_opens_from_its_jsonl(tmp_path):
    root = tmp_path / "s"
    written = filled(root)
    for path in (root / "index").iterdir():
        path.unlink()
    (root / "index").rmdir()
    (root / "index").write_text("in the way")  # (chmod does not stop root, this does)
    reopened = GenerationStore(root)
    assert reopened.keys() == written.keys() and reopened.stats() == written.stats()
    assert (root / "index").read_text() == "in the way"


def test_two_writers_of_one_file_are_refused(tmp_path):
    store = GenerationStore(tmp_path / "s")
    with store.writer():
        with pytest.raises(RuntimeError, match="index of store file"):
            store.writer()


def test_merging_many_keys_keeps_the_first_occurrence(tmp_path, monkeypatch):
    monkeypatch.setattr(KeyTable, "MERGE_EVERY", 8)  # force the bulk path often
    root = tmp_path / "s"
    store = GenerationStore(root)
    with store.writer(0, 2) as first:
        first.append([gen(i, text=f"first {i}") for i in range(20)])
    with store.writer(1, 2) as second:
        second.append([gen(i, text=f"second {i}") for i in range(10, 30)])
    assert len(store) == 30 and store.duplicates == 10
    assert store.get(f"{15:032x}").text == "first 15"
    cold = GenerationStore(root)
    assert cold.keys() == store.keys() and cold.duplicates == 10
    assert cold.get(f"{15:032x}").text == "first 15"


def test_malformed_keys_are_refused_before_anything_is_written(tmp_path):
    store = GenerationStore(tmp_path / "s")
    bad = gen(1)
    object.__setattr__(bad, "key", "not-a-key")
    with store.writer() as writer, pytest.raises(ValueError, match="32 hexadecimal digits"):
        writer.append([bad])
    assert len(GenerationStore(tmp_path / "s")) == 0 and "not-a-key" not in store
