from __future__ import annotations

import json
import logging
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hf_megadocs.generation.sources import SourceConfig, SourceStats, load_source, validate_source


def write_jsonl(path, records, extra_lines=()):
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_embedded_corpus_has_stable_hash_ids():
    stats = SourceStats()
    docs = list(load_source(SourceConfig(source="embedded"), stats))
    assert stats.read == 300 and stats.kept == len(docs) == 300 - sum(stats.skipped.values())
    assert len(docs) >= 290
    assert all(re.fullmatch(r"[0-9a-f]{16}", d.source_id) for d in docs)
    again = [d.source_id for d in load_source(SourceConfig(source="embedded", max_docs=5))]
    assert again == [d.source_id for d in docs[:5]]
    assert "bushfire" in docs[0].text


def test_embedded_long_documents():
    docs = list(load_source(SourceConfig(source="embedded-long", id_column="id", max_docs=20)))
    assert len(docs) == 20
    assert sum(len(d.text) for d in docs) / len(docs) > 2000
    assert docs[0].source_id == "assert"


def test_bad_documents_are_dropped_and_counted(tmp_path, caplog):
    path = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"id": 1, "text": "good one"},
            {"id": 2, "text": ""},
            {"id": 3, "text": "   \n"},
            {"id": 4, "text": 42},
            {"id": 5, "text": None},
            {"id": 1, "text": "same id again"},
            {"id": None, "text": "null id"},
            {"id": 6, "text": "good two"},
        ],
        extra_lines=['{"id": 7, "text": "torn'],
    )
    stats = SourceStats()
    with caplog.at_level(logging.WARNING, logger="hf_megadocs.generation.sources"):
        docs = list(load_source(SourceConfig(source=str(path), id_column="id"), stats))
    assert [(d.source_id, d.text) for d in docs] == [("1", "good one"), ("6", "good two")]
    assert stats.read == 9 and stats.kept == 2
    assert dict(stats.skipped) == {
        "empty": 2,
        "non_string_text": 1,
        "missing_text": 1,  # a null text, as Parquet and HF datasets give a missing one
        "duplicate_id": 1,
        "missing_id": 1,
        "bad_json": 1,
    }
    assert "duplicate_id" in caplog.text

    caplog.clear()
    stats = SourceStats()
    with caplog.at_level(logging.WARNING, logger="hf_megadocs.generation.sources"):
        list(
            load_source(SourceConfig(source=str(path), id_column="id", on_bad_input="skip"), stats)
        )
    assert sum(stats.skipped.values()) == 7 and caplog.text == ""

    with pytest.raises(ValueError, match=r"docs.jsonl:2: text is empty"):
        list(load_source(SourceConfig(source=str(path), id_column="id", on_bad_input="error")))


def test_duplicate_texts_without_id_column_are_duplicates(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl", [{"text": "same"}, {"text": "same"}, {"text": "other"}]
    )
    stats = SourceStats()
    docs = list(load_source(SourceConfig(source=str(path), on_bad_input="skip"), stats))
    assert len(docs) == 2 and stats.skipped["duplicate_id"] == 1


@pytest.mark.parametrize("policy", ["error", "warn", "skip"])
def test_missing_text_column_is_always_an_error(tmp_path, policy):
    path = write_jsonl(tmp_path / "d.jsonl", [{"body": "x", "url": "u"}])
    with pytest.raises(ValueError, match=r"'content'.*available columns: \['body', 'url'\]"):
        list(
            load_source(SourceConfig(source=str(path), text_column="content", on_bad_input=policy))
        )


def test_missing_id_column_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "x"}])
    with pytest.raises(ValueError, match="'doc_id' is not in source"):
        list(load_source(SourceConfig(source=str(path), id_column="doc_id")))


def test_parquet_json_array_and_directory(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    pq.write_table(pa.table({"text": ["p1", "p2"], "n": [1, 2]}), folder / "a.parquet")
    (folder / "b.json").write_text(json.dumps([{"text": "j1"}, {"text": "j2"}]), encoding="utf-8")
    write_jsonl(folder / "sub" / "c.jsonl", [{"text": "l1"}])
    (folder / "notes.txt").write_text("ignored", encoding="utf-8")
    texts = [d.text for d in load_source(SourceConfig(source=str(folder)))]
    assert texts == ["p1", "p2", "j1", "j2", "l1"]
    with pytest.raises(ValueError, match=r"'body'.*available columns: \['n', 'text'\]"):
        list(load_source(SourceConfig(source=str(folder / "a.parquet"), text_column="body")))
    assert len(list(load_source(SourceConfig(source=str(folder), max_docs=3)))) == 3


def test_unknown_sources_explain_accepted_forms(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        list(load_source(SourceConfig(source=str(tmp_path / "missing.jsonl"))))
    with pytest.raises(ValueError, match="not 'embedded', 'embedded-long', an existing"):
        list(load_source(SourceConfig(source="no-such-org-hf-megadocs/no-such-dataset")))
    (tmp_path / "x.csv").write_text("text\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match="must be one of .jsonl"):
        list(load_source(SourceConfig(source=str(tmp_path / "x.csv"))))


def test_validate_source(tmp_path):
    validate_source(SourceConfig(source="embedded"))
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"text": " "}, {"text": ""}])
    with pytest.raises(ValueError, match=r"no usable documents \(read 2"):
        validate_source(SourceConfig(source=str(empty), on_bad_input="skip"))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"max_docs": 0}, "max_docs"),
        ({"on_bad_input": "ignore"}, "on_bad_input"),
        ({"text_column": ""}, "text_column"),
        ({"source": ""}, "source"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"SourceConfig.{field}"):
        SourceConfig(**kwargs)


def test_the_bundled_long_set_has_no_duplicate_to_warn_about(caplog):
    stats = SourceStats()
    with caplog.at_level(logging.WARNING):
        docs = list(load_source(SourceConfig(source="embedded-long"), stats))
    assert len({d.text for d in docs}) == len(docs) == stats.kept == stats.read
    assert not stats.skipped and "duplicate" not in caplog.text
