"""Handing back mapped pages (hf_megadocs.mapped_pages): resident memory drops, data stays."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from hf_megadocs.mapped_pages import release_mapped_pages
from tests.conftest import rss_file_kib

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux madvise")


def test_a_read_mapping_gives_its_pages_back_and_reads_the_same_after(tmp_path):
    path = tmp_path / "tokens.npy"
    values = np.arange(64 << 20 >> 2, dtype=np.int32)  # 64 MiB
    np.save(path, values)
    mapped = np.load(path, mmap_mode="r")
    before = rss_file_kib()
    total = int(mapped.sum(dtype=np.int64))  # touches every page
    touched = rss_file_kib()
    assert touched - before > 48 << 10  # most of the 64 MiB became resident
    assert release_mapped_pages() >= 64 << 20
    assert rss_file_kib() - before < 8 << 10  # handed back
    assert int(mapped.sum(dtype=np.int64)) == total  # and the data reads the same


def test_writable_mappings_are_left_alone(tmp_path):
    path = tmp_path / "rows.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.int32, shape=(1 << 20,))
    array[:] = 7  # dirty pages of a writable map: dropping them could lose data
    release_mapped_pages()
    assert int(array[-1]) == 7 and int(array.sum()) == 7 << 20


def test_a_page_budget_releases_once_its_bytes_are_read(tmp_path):
    from hf_megadocs.mapped_pages import PageBudget

    path = tmp_path / "tokens.npy"
    np.save(path, np.ones(32 << 20 >> 2, dtype=np.int32))  # 32 MiB
    mapped = np.load(path, mmap_mode="r")
    before = rss_file_kib()
    budget = PageBudget(every_bytes=mapped.nbytes)
    mapped.sum()
    budget.read(mapped.nbytes // 2)
    assert rss_file_kib() - before > 24 << 10  # not yet: half the budget
    budget.read(mapped.nbytes // 2)
    assert rss_file_kib() - before < 8 << 10 and budget.pending == 0
