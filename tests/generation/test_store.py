from __future__ import annotations

import json

from hf_megadocs.generation.hardware import current_hardware
from hf_megadocs.generation.prompts import get_prompt
from hf_megadocs.generation.store import GenerationStore, writer_name
from hf_megadocs.records import Generation


def gen(i: int, text: str | None = None, flags: tuple[str, ...] = ()) -> Generation:
    return Generation(
        key=f"{i:032x}",
        source_id=f"doc-{i}",
        prompt_id="wiki",
        prompt_hash="h" * 16,
        generator="g",
        generator_revision="r",
        sampling={"seed": 0},
        sample_index=0,
        input_part="",
        text=text or f"text {i} ünïcode",
        raw_text=f"raw {i}",
        prompt_tokens=10,
        completion_tokens=i,
        finish_reason="stop",
        flags=flags,
        backend="dummy",
    )


def test_append_and_read_back(tmp_path):
    store = GenerationStore(tmp_path / "s")
    assert len(store) == 0 and store.get("0" * 32) is None
    with store.writer() as writer:
        writer.append([gen(1), gen(2, flags=("truncated",))])
        writer.append([gen(3)])
    assert len(store) == 3 and f"{2:032x}" in store
    reopened = GenerationStore(tmp_path / "s")
    assert reopened.keys() == store.keys()
    assert reopened.get(f"{2:032x}") == gen(2, flags=("truncated",))
    many = reopened.get_many([f"{1:032x}", f"{3:032x}", "f" * 32])
    assert set(many) == {f"{1:032x}", f"{3:032x}"} and many[f"{3:032x}"].text == "text 3 ünïcode"
    stats = reopened.stats()
    assert stats["count"] == 3 and stats["completion_tokens"] == 6 and stats["prompt_tokens"] == 30
    assert stats["flags"] == {"truncated": 1} and stats["by_prompt"] == {"wiki": 3}


def test_torn_last_line_is_ignored_then_isolated(tmp_path, caplog):
    store = GenerationStore(tmp_path)
    with store.writer() as writer:
        writer.append([gen(1), gen(2)])
    path = writer.path
    line = json.dumps(gen(3).to_json())
    with path.open("ab") as handle:  # what kill -9 in the middle of a write leaves
        handle.write(line[: len(line) // 2].encode())
    reader = GenerationStore(tmp_path)
    assert reader.keys() == {f"{1:032x}", f"{2:032x}"}
    assert reader.stats()["torn_lines"] == 1
    with reader.writer() as writer:  # same process => same file: the fragment gets its own line
        writer.append([gen(3)])
    fresh = GenerationStore(tmp_path)
    assert fresh.keys() == {f"{i:032x}" for i in (1, 2, 3)}
    assert fresh.get(f"{3:032x}") == gen(3)
    assert fresh.stats()["corrupt_lines"] == 1 and fresh.stats()["torn_lines"] == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("incomplete last line" in m and str(path) in m for m in warnings)
    assert any("not a generation record" in m for m in warnings)
    assert "3 generations in 1 file(s); 0 duplicate, 0 torn, 1 corrupt" in fresh.health()


def test_union_of_shards_and_refresh(tmp_path):
    writer_store = GenerationStore(tmp_path)
    reader = GenerationStore(tmp_path)
    with writer_store.writer(0, 2) as w0, writer_store.writer(1, 2) as w1:
        assert w0.path != w1.path and w0.name == writer_name(0, 2)
        w0.append([gen(1)])
        w1.append([gen(2)])
    assert len(reader) == 0
    reader.refresh()
    assert reader.keys() == {f"{1:032x}", f"{2:032x}"}
    with writer_store.writer(1, 2) as w1:
        w1.append([gen(4)])
    reader.refresh()
    assert len(reader) == 3 and reader.stats()["files"] == 2 and reader.duplicates == 0


def test_duplicate_keys_first_file_wins(tmp_path):
    store = GenerationStore(tmp_path)
    with store.writer(0, 2) as first, store.writer(1, 2) as second:
        first.append([gen(1, text="first")])
        second.append([gen(1, text="second"), gen(2)])
    assert store.duplicates == 1
    reopened = GenerationStore(tmp_path)
    assert reopened.get(f"{1:032x}").text == "first"
    assert reopened.duplicates == 1 and len(reopened) == 2


def test_prompts_and_runs_are_recorded(tmp_path):
    store = GenerationStore(tmp_path)
    wiki = get_prompt("wiki")
    store.record_prompt(wiki)
    store.record_prompt(wiki)
    store.record_prompt(get_prompt("qa"))
    prompts = store.prompts()
    assert [p["prompt_id"] for p in prompts] == ["wiki", "qa"]
    assert prompts[0]["user"] == wiki.user and prompts[0]["content_hash"] == wiki.content_hash
    path = store.record_run({"num_samples": 2}, {"generated": 5}, shard_index=1, num_shards=3)
    assert path.name.startswith("shard-1-of-3-")
    assert store.runs() == [
        {
            "config": {"num_samples": 2},
            "summary": {"generated": 5},
            "created_utc": store.runs()[0]["created_utc"],
            "hardware": current_hardware().label,  # rates are compared like for like
        }
    ]


def test_many_records_round_trip(tmp_path):
    store = GenerationStore(tmp_path)
    with store.writer() as writer:
        for start in range(0, 5000, 500):
            writer.append([gen(i) for i in range(start, start + 500)])
    reopened = GenerationStore(tmp_path)
    keys = [f"{i:032x}" for i in range(4999, -1, -7)]
    found = reopened.get_many(keys)
    assert len(found) == len(keys) and all(
        found[f"{i:032x}"].source_id == f"doc-{i}" for i in range(4999, -1, -7)
    )


def test_runs_are_ordered_by_time_not_writer_name(tmp_path):
    store = GenerationStore(tmp_path)
    store.record_run({"n": 1}, {}, shard_index=9, num_shards=10)
    store.record_run({"n": 2}, {}, shard_index=0, num_shards=10)  # sorts first by name
    assert [run["config"]["n"] for run in store.runs()] == [1, 2]


def test_a_torn_prompts_file_keeps_its_prompts_and_takes_new_ones(tmp_path):
    store = GenerationStore(tmp_path)
    wiki = get_prompt("wiki")
    store.record_prompt(wiki)
    with (tmp_path / "prompts.jsonl").open("ab") as handle:
        handle.write(b'{"prompt_id": "qa", "cont')  # a writer killed mid-line
    assert [p["prompt_id"] for p in store.prompts()] == ["wiki"]
    store.record_prompt(get_prompt("qa"))
    assert [p["prompt_id"] for p in store.prompts()] == ["wiki", "qa"]


def test_a_damaged_run_record_is_skipped_with_a_warning_not_a_crash(tmp_path, caplog):
    store = GenerationStore(tmp_path)
    store.record_run({"n": 1}, {})
    (tmp_path / "runs" / "shard-0-of-1-20260101T000000.000000Z.json").write_text('{"conf')
    assert [run["config"]["n"] for run in store.runs()] == [1]
    assert "Skipping unreadable run record" in caplog.text
