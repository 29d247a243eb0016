"""One bad source line is a counted, located drop, not the end of the job.

Before: a byte that is not UTF-8, or a lone surrogate escape (valid JSON, ``"\\ud800"``),
ended ``hf-megadocs generate`` with "'utf-8' codec can't decode byte 0xe9 in position 50"
(no file, no line) and ``load_source`` with a raw exception, whatever ``on_bad_input``
said; one record without the text key aborted the source with "Column 'text' is not in
source"; a UTF-8 byte-order mark made the first document a bad_json drop; a null text in a
Parquet row or an HF dataset record was counted as "non_string_text".
"""

from __future__ import annotations

import json
import logging
import re
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hf_megadocs.generation.sources import SourceConfig, SourceStats, load_source
from tests.faults.helpers import ENV, HF_MEGADOCS

GOOD = json.dumps({"id": "a", "text": "a good first document"}).encode()
LAST = json.dumps({"id": "z", "text": "a good last document"}).encode()
BAD_LINES = {
    "bad_byte": (b'{"id": "b", "text": "caf\xe9 au lait"}', "bad_encoding", "byte 0xE9"),
    "lone_surrogate": (b'{"id": "b", "text": "half \\ud800 a pair"}', "bad_encoding", "U+D800"),
    "surrogate_id": (b'{"id": "\\udc80", "text": "fine text"}', "bad_encoding", "U+DC80"),
    "missing_text": (b'{"id": "b", "body": "elsewhere"}', "missing_text", "'text' is absent"),
}


def _source(tmp_path, bad: bytes, name: str = "docs.jsonl"):
    path = tmp_path / name
    path.write_bytes(b"\n".join([GOOD, bad, LAST]) + b"\n")
    return path


def _read(path, policy: str, caplog, **kwargs):
    stats = SourceStats()
    config = SourceConfig(source=str(path), id_column="id", on_bad_input=policy, **kwargs)
    with caplog.at_level(logging.WARNING, logger="hf_megadocs.generation.sources"):
        docs = list(load_source(config, stats))
    return docs, stats


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
@pytest.mark.parametrize("policy", ["warn", "skip"])
def test_a_bad_line_is_dropped_counted_and_located(tmp_path, caplog, kind, policy):
    bad, reason, why = BAD_LINES[kind]
    path = _source(tmp_path, bad)
    docs, stats = _read(path, policy, caplog)
    assert [d.source_id for d in docs] == ["a", "z"]
    assert (stats.read, stats.kept, dict(stats.skipped)) == (3, 2, {reason: 1})
    for doc in docs:
        doc.text.encode("utf-8")  # what is kept can be written
    if policy == "warn":
        assert f"{path}:2:" in caplog.text and why in caplog.text and reason in caplog.text
    else:
        assert caplog.text == ""


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_under_error_a_bad_line_is_an_error_naming_file_and_line(tmp_path, kind):
    bad, reason, why = BAD_LINES[kind]
    path = _source(tmp_path, bad)
    stats = SourceStats()
    with pytest.raises(
        ValueError, match=rf"{re.escape(str(path))}:2: .*{re.escape(why)}"
    ) as raised:
        list(
            load_source(SourceConfig(source=str(path), id_column="id", on_bad_input="error"), stats)
        )
    assert not isinstance(raised.value, UnicodeError)
    assert stats.skipped == {reason: 1}


def test_a_lone_surrogate_is_dropped_without_an_id_column(tmp_path):
    path = _source(tmp_path, BAD_LINES["lone_surrogate"][0])
    stats = SourceStats()
    docs = list(load_source(SourceConfig(source=str(path), on_bad_input="skip"), stats))
    assert len(docs) == 2 and stats.skipped == {"bad_encoding": 1}


@pytest.mark.parametrize("policy", ["error", "warn", "skip"])
def test_a_byte_order_mark_is_read_as_one(tmp_path, caplog, policy):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD + b"\r\n" + LAST + b"\r\n")
    docs, stats = _read(path, policy, caplog)
    assert [d.source_id for d in docs] == ["a", "z"] and not stats.skipped
    array = tmp_path / "bom.json"
    array.write_bytes(b"\xef\xbb\xbf[" + GOOD + b", " + LAST + b"]")
    docs, stats = _read(array, policy, caplog)
    assert [d.source_id for d in docs] == ["a", "z"] and not stats.skipped


def test_a_bad_byte_in_a_json_array_drops_that_item(tmp_path, caplog):
    path = tmp_path / "docs.json"
    path.write_bytes(b"[" + b",\n".join([GOOD, BAD_LINES["bad_byte"][0], LAST]) + b"]")
    docs, stats = _read(path, "warn", caplog)
    assert [d.source_id for d in docs] == ["a", "z"] and stats.skipped == {"bad_encoding": 1}
    assert f"{path}: item 1" in caplog.text
    path.write_bytes(b"[" + GOOD + b",\n" + LAST)  # torn: the whole file is unreadable
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:2:\d+: invalid JSON"):
        _read(path, "warn", caplog)


def test_a_column_no_record_has_is_still_one_clear_error(tmp_path, caplog):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"body": f"doc {i}", "n": i}) + "\n" for i in range(5)))
    with pytest.raises(ValueError, match=r"'text' is not in source .*\['body', 'n'\]"):
        _read(path, "warn", caplog)
    assert "Dropping" not in caplog.text  # the fix is the column, not five warnings
    path.write_text("".join(json.dumps({"body": "x"}) + "\n" for _ in range(1500)))
    stats = SourceStats()
    with pytest.raises(ValueError, match="none of its first 1000 records"):
        list(load_source(SourceConfig(source=str(path), on_bad_input="skip"), stats))
    assert stats.read == 1000


def test_parquet_rows_without_text_are_missing_text(tmp_path, caplog):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": ["one", None, "three"], "id": ["1", "2", "3"]}), path)
    docs, stats = _read(path, "warn", caplog)
    assert [d.text for d in docs] == ["one", "three"] and stats.skipped == {"missing_text": 1}
    assert f"{path}: row 1" in caplog.text


def test_hub_records_without_text_are_missing_text(tmp_path, monkeypatch, caplog):
    import datasets

    data = tmp_path / "train.jsonl"
    records = [{"id": "a", "text": "one"}, {"id": "b"}, {"id": "c", "text": "three"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    load = datasets.load_dataset

    def offline_hub(name, config=None, **kwargs):  # a Hub dataset name, served from ``data``
        return load("json", data_files=str(data), **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", offline_hub)
    docs, stats = _read("some-org/some-dataset", "warn", caplog)
    assert [d.source_id for d in docs] == ["a", "c"] and stats.skipped == {"missing_text": 1}
    assert "some-org/some-dataset record 1: no text" in caplog.text
    with pytest.raises(ValueError, match=r"'body' is not in source .*\['id', 'text'\]"):
        _read("some-org/some-dataset", "warn", caplog, text_column="body")
    with data.open("ab") as handle:
        handle.write(BAD_LINES["bad_byte"][0] + b"\n")
    with pytest.raises(ValueError, match="could not be read past record 3") as raised:
        _read("some-org/some-dataset", "warn", caplog)
    assert not isinstance(raised.value, UnicodeError)


def _generate(source, store, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [HF_MEGADOCS, "generate", "--backend.backend", "dummy", "--source.source", str(source),
         "--source.id_column", "id", "--store_dir", str(store), *flags],
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_generate_drops_and_names_each_bad_line(tmp_path):
    path = tmp_path / "docs.jsonl"
    lines = [GOOD, *(bad for bad, _, _ in BAD_LINES.values()), LAST]
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")
    done = _generate(path, tmp_path / "store")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    for line, (_, reason, why) in enumerate(BAD_LINES.values(), start=2):
        assert f"({reason}): {path}:{line}: " in done.stderr and why in done.stderr
    assert "source:bad_encoding | 3" in done.stdout and "source:missing_text | 1" in done.stdout
    assert "source:bad_json" not in done.stdout  # the byte-order mark is not a bad line

    done = _generate(path, tmp_path / "store_error", "--source.on_bad_input", "error")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{path}:2: not valid UTF-8 (byte 0xE9" in done.stderr
