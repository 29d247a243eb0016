"""Run-directory loading: the contract is read, and every kind of bad input names the run."""

from __future__ import annotations

import json

import pytest

from hf_megadocs.analysis.runs import RunError, check_same, load_run, load_runs
from tests.analysis.rundirs import write_run


def test_load_run_reads_contract(tmp_path):
    path = write_run(
        tmp_path,
        "stitched_g4",
        method="stitched",
        num_generations=4,
        real_tokens=4_000_000,
        synthetic_tokens=9_000_000,
        iid_loss=3.25,
    )
    run = load_run(path)
    assert (run.name, run.method, run.num_generations) == ("stitched_g4", "stitched", 4)
    assert (run.real_tokens, run.synthetic_tokens) == (4_000_000, 9_000_000)
    assert run.iid_loss == pytest.approx(3.25)
    assert run.long_context_loss == pytest.approx(3.0)
    assert list(run.long_context_by_position) == ["0-512", "512-1024", "1024-2048"]
    assert len(run.train_records) == 4 and run.finished
    assert run.label == "stitched G=4"


def test_empty_run_list_is_an_error():
    with pytest.raises(RunError, match="no run directories"):
        load_runs([])


@pytest.mark.parametrize("missing", ["config.json", "metrics.jsonl"])
def test_missing_file_names_the_run(tmp_path, missing):
    path = write_run(tmp_path, "broken_run")
    (path / missing).unlink()
    with pytest.raises(RunError, match=f"broken_run.*{missing}"):
        load_run(path)


def test_unfinished_run_needs_opt_in(tmp_path):
    path = write_run(tmp_path, "half_done", finished=False, iid_loss=4.0)
    with pytest.raises(RunError, match="half_done.*summary.json"):
        load_run(path)
    run = load_run(path, allow_unfinished=True)
    assert not run.finished and run.iid_loss == pytest.approx(4.0)


def test_partial_metrics_without_eval_names_the_run(tmp_path):
    path = write_run(tmp_path, "no_eval")
    lines = (path / "metrics.jsonl").read_text().splitlines()
    (path / "metrics.jsonl").write_text("\n".join(l for l in lines if '"eval"' not in l) + "\n")
    with pytest.raises(RunError, match="no_eval.*no eval record"):
        load_run(path)


def test_torn_last_line_is_skipped_but_corruption_is_not(tmp_path):
    path = write_run(tmp_path, "torn")
    with (path / "metrics.jsonl").open("a") as fh:
        fh.write('{"kind": "train", "st')
    assert load_run(path).skipped_lines == 1
    text = (path / "metrics.jsonl").read_text()
    (path / "metrics.jsonl").write_text("garbage\n" + text)
    with pytest.raises(RunError, match="torn.*line 1"):
        load_run(path)


def test_missing_config_field_and_eval_loss(tmp_path):
    path = write_run(tmp_path, "no_tok")
    config = json.loads((path / "config.json").read_text())
    del config["tokenizer"]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match="no_tok.*tokenizer"):
        load_run(path)
    other = write_run(tmp_path, "nan_eval")
    (other / "metrics.jsonl").write_text(
        '{"kind": "eval", "step": 1, "iid_loss": NaN}\n{"kind": "eval", "step": 2}\n'
    )
    with pytest.raises(RunError, match="nan_eval.*iid_loss"):
        load_run(other)


def test_duplicate_run_and_mixed_tokenizers(tmp_path):
    a = write_run(tmp_path, "a")
    with pytest.raises(RunError, match="given twice"):
        load_runs([a, a])
    b = write_run(tmp_path, "b", tokenizer="gpt2")
    with pytest.raises(RunError, match="tokenizer.*'gpt2': \\['b'\\]"):
        check_same(load_runs([a, b]), "tokenizer", "data scaling law")
