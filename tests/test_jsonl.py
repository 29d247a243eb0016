"""Append-only JSON Lines that survive a writer killed mid-line (hf_megadocs.jsonl)."""

from __future__ import annotations

import json
import logging

from hf_megadocs.jsonl import SkippedLine, append_record, read_records


def test_a_torn_last_line_is_skipped_with_one_warning_naming_file_and_offset(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    complete = b'{"step": 1}\n{"step": 2}\n'
    path.write_bytes(complete + b'{"step": 3, "lo')
    with caplog.at_level(logging.WARNING, logger="hf_megadocs.jsonl"):
        records, skipped = read_records(path)
    assert records == [{"step": 1}, {"step": 2}]
    assert skipped == [SkippedLine(offset=len(complete), length=15)]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage()
    assert f"offset(s) {len(complete)}" in warnings[0].getMessage()


def test_appending_after_a_torn_tail_starts_a_new_line_and_keeps_every_record(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b", "us')
    append_record(path, {"id": "c"})
    append_record(path, {"id": "d"})
    records, skipped = read_records(path)
    assert [r["id"] for r in records] == ["a", "c", "d"]
    assert skipped == [SkippedLine(offset=12, length=16)]  # the fragment, on its own line
    assert path.read_bytes().endswith(b'{"id": "d"}\n')


def test_every_unusable_line_is_counted_wherever_it_is(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1}\nnot json\n[1, 2]\n\n{"step": 3}\n')
    with caplog.at_level(logging.WARNING, logger="hf_megadocs.jsonl"):
        records, skipped = read_records(path)
    assert records == [{"step": 1}, {"step": 3}]
    assert [line.offset for line in skipped] == [12, 21]
    assert "skipped 2 line(s)" in caplog.text


def test_records_round_trip_through_append(tmp_path):
    path = tmp_path / "x.jsonl"
    records = [{"step": i, "text": "é\n"} for i in range(3)]
    for record in records:
        append_record(path, record)
    assert read_records(path) == (records, [])
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[0]) == records[0]
