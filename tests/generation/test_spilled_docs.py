"""Source documents spilled to a flat file read by position (generation.spilled_docs)."""

from __future__ import annotations

import gc
import os
import pickle
import random
import sys

import pytest

from hf_megadocs.generation.spilled_docs import SpilledDocs, spill_folder
from hf_megadocs.records import SourceDoc
from tests.conftest import rss_file_kib


def _docs(n: int) -> list[SourceDoc]:
    return [SourceDoc(source_id=f"d{i}", text=f"text {i} " + "é" * (i % 7)) for i in range(n)]


def test_reads_back_every_document_in_any_order(tmp_path):
    docs = _docs(10)
    spilled = SpilledDocs.write(iter(docs), tmp_path / "docs")
    assert len(spilled) == 10
    assert list(spilled) == docs
    assert spilled[-1] == docs[-1] and spilled[3:6] == docs[3:6]
    with pytest.raises(IndexError):
        spilled[10]


def test_pickles_as_its_path_and_maps_the_file_again(tmp_path):
    spilled = SpilledDocs.write(_docs(3), tmp_path / "docs")
    assert len(spilled) == 3  # mapped in this process
    payload = pickle.dumps(spilled)
    assert len(payload) < 200  # the path, not the texts
    assert list(pickle.loads(payload)) == _docs(3)


def test_empty_source_gives_an_empty_sequence(tmp_path):
    spilled = SpilledDocs.write([], tmp_path / "docs")
    assert len(spilled) == 0 and list(spilled) == []


def test_spill_folder_is_removed_with_its_owner(tmp_path):
    class Owner:
        pass

    owner = Owner()
    folder = spill_folder(owner, root=tmp_path)
    (folder / "file").write_text("x")
    assert folder.parent == tmp_path and folder.exists()
    del owner
    gc.collect()
    assert not folder.exists()


def test_folders_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (tmp_path / f"spill-{dead}-abc").mkdir()
    live = tmp_path / f"spill-{os.getpid()}-def"
    live.mkdir()
    owner = type("Owner", (), {})()
    folder = spill_folder(owner, root=tmp_path)
    assert not (tmp_path / f"spill-{dead}-abc").exists()
    assert live.exists() and folder.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/status")
def test_reading_every_document_in_shuffled_order_keeps_the_file_out_of_rss(tmp_path):
    """Shuffled builders read one document here, one there: through a memory map each read
    would make a page-cache folio (up to 2 MiB) resident, so the whole file in the end."""

    text = "word " * 20_000  # 100 kB per document, 120 MB in all
    spilled = SpilledDocs.write((SourceDoc(f"d{i}", text) for i in range(1_200)), tmp_path / "d")
    base, peak = rss_file_kib(), 0
    for i in random.Random(0).sample(range(1_200), 1_200):
        doc = spilled[i]
        assert doc.source_id == f"d{i}" and len(doc.text) == len(text)
        peak = max(peak, rss_file_kib() - base)
    assert peak < 8 << 10, f"file-backed RSS grew {peak >> 10} MiB over a 120 MB file"


def test_a_file_cut_short_is_an_error_not_a_short_document(tmp_path):
    spilled = SpilledDocs.write(iter(_docs(5)), tmp_path / "docs")
    os.truncate(spilled.path, spilled.path.stat().st_size - 3)
    with pytest.raises(OSError, match="shorter than its offsets"):
        SpilledDocs(spilled.path)[4]
