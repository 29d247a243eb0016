"""Tests for the datasets registration done by ``import hf_megadocs``."""

from __future__ import annotations

import configparser
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets  # noqa: E402
import datasets.load  # noqa: E402
import datasets.packaged_modules  # noqa: E402

import hf_megadocs  # noqa: E402
from hf_megadocs.corpora import registration  # noqa: E402

KNOBS = {"backend": "dummy", "max_docs": 6, "max_new_tokens": 8, "long_doc_min_words": None}


def test_import_registers_and_register_is_idempotent():
    assert registration.is_registered()
    factory = datasets.load.PackagedDatasetModuleFactory
    hf_megadocs.register()
    assert datasets.load.PackagedDatasetModuleFactory is factory  # not wrapped twice
    module_path, code_hash = datasets.packaged_modules._PACKAGED_DATASETS_MODULES["hf_megadocs"]
    assert (
        module_path == "hf_megadocs.corpora.builder"
        and code_hash == registration.builder_module_hash()
    )


def test_supported_range_matches_the_lower_bound_and_the_tested_version():
    root = Path(__file__).parents[2]
    setup = configparser.ConfigParser()
    setup.read(root / "setup.cfg")
    pins = [line.strip() for line in setup["options"]["install_requires"].splitlines()]
    lower = registration.SUPPORTED_DATASETS.split(",")[0]
    assert f"datasets{lower}" in pins  # newer releases are allowed, with a warning
    tested = (root / "constraints.txt").read_text()
    assert "\ndatasets==5.2." in tested and datasets.__version__.startswith("5.2.")


def test_load_works_from_any_directory_with_the_same_fingerprint(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    cluttered = tmp_path / "cluttered"
    (cluttered / "data").mkdir(parents=True)
    (cluttered / "data" / "train.jsonl").write_text(json.dumps({"text": "stray file"}) + "\n")
    ids = []
    for cwd in (empty, cluttered):
        monkeypatch.chdir(cwd)
        builder = datasets.load_dataset_builder(
            "hf_megadocs", "stitched_g2", store_dir=str(tmp_path / "s"), **KNOBS
        )
        assert not builder.config.data_files
        ids.append(builder.config_id)
    assert ids[0] == ids[1]
    corpus = datasets.load_dataset(
        "hf_megadocs",
        "stitched_g2",
        store_dir=str(tmp_path / "s"),
        cache_dir=str(tmp_path / "c"),
        **KNOBS,
    )
    assert len(corpus["train"]) > 0


def test_other_packaged_modules_are_untouched(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"a": 1}) + "\n" + json.dumps({"a": 2}) + "\n")
    rows = datasets.load_dataset(
        "json", data_files=str(data), cache_dir=str(tmp_path / "c"), split="train"
    )
    assert rows["a"] == [1, 2]


def test_unregister_then_load_corpus_still_works(tmp_path):
    registration.unregister()
    try:
        assert not registration.is_registered()
        assert datasets.load.PackagedDatasetModuleFactory.__name__ == "PackagedDatasetModuleFactory"
        with pytest.raises((ConnectionError, FileNotFoundError)):  # offline / not on the Hub
            datasets.load_dataset_builder("hf_megadocs", "stitched_g2", **KNOBS)
        corpus = hf_megadocs.load_corpus(
            "stitched_g2", store_dir=str(tmp_path / "s"), cache_dir=str(tmp_path / "c"), **KNOBS
        )
        assert len(corpus["train"]) > 0
    finally:
        hf_megadocs.register()
    assert registration.is_registered()


def test_moved_internals_raise_an_error_naming_supported_versions(monkeypatch):
    monkeypatch.delattr(datasets.packaged_modules, "_PACKAGED_DATASETS_MODULES")
    with pytest.raises(registration.RegistrationError, match=r"datasets>=5\.2,<5\.3.*load_corpus"):
        registration.register()
