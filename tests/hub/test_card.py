"""Dataset cards: metadata that datasets and huggingface_hub parse, provenance from the store."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard, DatasetCardData

from hf_megadocs.corpora.assembly import assemble_stitched, make_row
from hf_megadocs.generation.backends import BackendConfig
from hf_megadocs.generation.generate import GenerationConfig, generate
from hf_megadocs.generation.prompts import get_prompt
from hf_megadocs.generation.sources import SourceConfig
from hf_megadocs.generation.store import GenerationStore
from hf_megadocs.hub.card import render_card, size_category, split_config_name, validate_card
from hf_megadocs.hub.export import push_to_hub
from hf_megadocs.records import SamplingConfig


def build_small_corpus(tmp_path: Path, docs, backend, num_generations: int = 2) -> tuple[str, dict]:
    """Fill a real store with the dummy backend and assemble a stitched corpus from it.

    Returns (store_dir, {"stitched_g<G>": DatasetDict}); docs 0-3 train, 4-5 validation.
    """
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"id": d.source_id, "text": d.text}) + "\n" for d in docs))
    store_dir = str(tmp_path / "store")
    sampling = SamplingConfig(max_new_tokens=8, seed=3)
    generate(
        GenerationConfig(
            source=SourceConfig(source=str(source), id_column="id"),
            num_samples=num_generations,
            sampling=sampling,
            backend=BackendConfig(backend="dummy"),
            store_dir=store_dir,
            num_shards=1,
            shard_index=0,
        ),
        backend=backend,
    )
    store = GenerationStore(store_dir)
    by_doc: dict[str, list] = {}
    for generation in store.get_many(store.keys()).values():
        by_doc.setdefault(generation.source_id, []).append(generation)
    prompt = get_prompt("wiki")
    rows = []
    for doc in docs:
        rephrases = sorted(by_doc[doc.source_id], key=lambda g: g.sample_index)
        row = make_row(
            assemble_stitched(doc.text, rephrases),
            source_id=doc.source_id,
            method="stitched",
            num_generations=num_generations,
            generator=rephrases[0].generator,
            prompt_id="wiki",
            prompt_hash=prompt.content_hash,
            seed=sampling.seed,
        )
        rows.append(row)
    corpus = datasets.DatasetDict(
        train=datasets.Dataset.from_list(rows[:4]), validation=datasets.Dataset.from_list(rows[4:])
    )
    return store_dir, {f"stitched_g{num_generations}": corpus}


@pytest.fixture
def exported(tmp_path, sample_docs, dummy_backend):
    store_dir, corpora = build_small_corpus(tmp_path, sample_docs, dummy_backend)
    result = push_to_hub(
        "my-org/tiny-megadocs",
        list(corpora),
        dry_run=True,
        local_dir=tmp_path / "out",
        corpora=corpora,
        store_dir=store_dir,
        source="embedded",
    )
    return result, corpora, store_dir


def test_card_parses_and_metadata_validates(exported):
    result, corpora, _ = exported
    card_path = result.local_dir / "README.md"
    card = validate_card(card_path)
    # Strict parse: unknown or malformed metadata raises instead of being dropped.
    DatasetCardData(**card.data.to_dict(), ignore_metadata_errors=False)
    loaded = DatasetCard.load(card_path)
    assert loaded.data.license == "other"
    assert loaded.data.task_categories == ["text-generation"]
    assert loaded.data.size_categories == ["n<1K"]
    assert loaded.data.configs == [
        {
            "config_name": "stitched_g2",
            "data_files": [
                {"split": "train", "path": "stitched_g2/train-*"},
                {"split": "validation", "path": "stitched_g2/validation-*"},
            ],
        }
    ]
    infos = datasets.info.DatasetInfosDict.from_dataset_card_data(loaded.data)
    assert infos["stitched_g2"].features == corpora["stitched_g2"]["train"].features
    assert infos["stitched_g2"].splits["train"].num_examples == 4
    assert infos["stitched_g2"].splits["validation"].num_examples == 2


def test_card_body_carries_provenance(exported):
    result, corpora, store_dir = exported
    body = (result.local_dir / "README.md").read_text()
    wiki = get_prompt("wiki")
    # Prompts verbatim, with their hash.
    assert wiki.user in body and wiki.system in body and wiki.content_hash in body
    # Generator, revision, backend, sampling and seed from the store records.
    assert "| `dummy-generator` | `0` | dummy | 1.0 | 1.0 | 8 | 3 |" in body
    # Per-config counts: 4 train docs x (2 rephrases) = 8 generations.
    assert "| `stitched_g2` | stitched | 2 | train | 4 | 4 | 8 |" in body
    # The generation run that filled the store is included; the local store path is not.
    assert '"generated": 12' in body
    assert "store_dir" not in body and store_dir not in body
    assert "Lee" in body and "LGPL-2.1" in body
    assert "Kim and Kotha" in body and "2605.17849" in body and "Kang and others" in body
    assert "accelerate launch -m hf_megadocs.train --config tiny_cpu" in body


def test_filtered_outputs_are_counted_by_reason(tmp_path, sample_docs, dummy_backend):
    store_dir, corpora = build_small_corpus(tmp_path, sample_docs, dummy_backend)
    # Mark one stored generation as a refusal, as cleaning would.
    path = next((Path(store_dir) / "generations").glob("*.jsonl"))
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    record["flags"] = ["refusal"]
    del record["crc32"]  # edited, it can only pass as a record written before checksums
    path.write_text("\n".join([json.dumps(record)] + lines[1:]) + "\n" + '{"key": "to')
    result = push_to_hub(
        "my-org/tiny",
        list(corpora),
        dry_run=True,
        local_dir=tmp_path / "out",
        corpora=corpora,
        store_dir=store_dir,
    )
    body = (result.local_dir / "README.md").read_text()
    assert "| refusal | 1 | dropped |" in body and "| truncated | 11 | kept |" in body
    assert "| unusable (empty or refusal) | 1 |" in body
    assert "| store lines skipped (duplicate / torn / corrupt) | 0 / 1 / 0 |" in body


def test_card_rerender_is_byte_identical(exported, tmp_path):
    result, corpora, store_dir = exported
    first = (result.local_dir / "README.md").read_bytes()
    again = push_to_hub(
        "my-org/tiny-megadocs",
        list(corpora),
        dry_run=True,
        local_dir=result.local_dir,
        corpora=corpora,
        store_dir=store_dir,
        source="embedded",
    )
    assert (again.local_dir / "README.md").read_bytes() == first


def test_validate_card_reports_missing_and_mismatched_files(exported):
    result, _, _ = exported
    card_path = result.local_dir / "README.md"
    shard = next((result.local_dir / "stitched_g2").glob("validation-*.parquet"))
    shard.unlink()
    with pytest.raises(ValueError, match="split 'validation': no file stitched_g2/validation-"):
        validate_card(card_path)
    train = next((result.local_dir / "stitched_g2").glob("train-*.parquet"))
    datasets.load_dataset("parquet", data_files=str(train), split="train").select([0]).to_parquet(
        str(train)
    )
    with pytest.raises(ValueError, match="files hold 1 rows, dataset_info says 4"):
        validate_card(card_path)


def test_license_comes_from_the_source(tmp_path, sample_docs, dummy_backend, caplog):
    store_dir, corpora = build_small_corpus(tmp_path, sample_docs, dummy_backend)
    common = dict(dry_run=True, corpora=corpora, store_dir=store_dir)
    local = push_to_hub(
        "o/a", list(corpora), local_dir=tmp_path / "a", source=str(tmp_path), **common
    )
    assert DatasetCard.load(local.local_dir / "README.md").data.license == "unknown"
    hub = push_to_hub(
        "o/b", list(corpora), local_dir=tmp_path / "b", source="someone/corpus", **common
    )
    data = DatasetCard.load(hub.local_dir / "README.md").data
    # Offline, the source card cannot be read: "unknown" with a note, and the source is listed.
    assert data.license == "unknown" and data.source_datasets == ["someone/corpus"]
    stated = push_to_hub(
        "o/c", list(corpora), local_dir=tmp_path / "c", license="cc-by-4.0", **common
    )
    assert DatasetCard.load(stated.local_dir / "README.md").data.license == "cc-by-4.0"


def test_missing_template_is_a_clear_error(exported, tmp_path):
    from hf_megadocs.hub.card import CardContext

    context = CardContext(repo_id="o/x", configs=[], source_name="x")
    with pytest.raises(FileNotFoundError, match="template not found"):
        render_card(context, template_path=tmp_path / "nope.md")


def test_names_and_sizes():
    assert split_config_name("stitched_real_first_g8") == ("stitched_real_first", 8)
    assert split_config_name("real") == ("real", None)
    with pytest.raises(ValueError, match="Unknown config name"):
        split_config_name("stitched")
    assert [size_category(n) for n in (0, 999, 1000, 123_456, 2_000_000_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "100K<n<1M",
        "n>1B",
    ]
