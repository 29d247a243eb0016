"""The study runner (hf_megadocs.jobs.study): planning, launching, skipping, summarising."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from hf_megadocs.jobs import study
from hf_megadocs.jobs.study import (
    StudyConfig,
    plan_study,
    render_study,
    run_study,
    summarise,
    write_figures,
)
from tests.analysis.rundirs import law_loss, write_run


def small(tmp_path: Path, **kwargs) -> StudyConfig:
    values = dict(
        output_dir=str(tmp_path / "study"),
        real_fractions=[0.125, 0.25, 0.5, 1.0],
        real_epochs=[1.0, 2.0],
        methods=["simple", "stitched"],
        generations=[1, 2],
        mixed_epochs=2.0,
        seeds=[0, 1],
    )
    values.update(kwargs)
    return StudyConfig(**values)


def test_the_plan_covers_the_law_the_budget_and_every_method(tmp_path):
    runs = plan_study(small(tmp_path))
    names = [run.name for run in runs]
    assert len(names) == len(set(names))
    real = [r for r in runs if r.method == "real" and r.budget_of is None]
    assert len(real) == 4 * 2 * 2  # D × epochs × seeds
    assert {r.real_fraction for r in real} == {0.125, 0.25, 0.5, 1.0}
    budget = {(r.budget_of, r.real_epochs) for r in runs if r.budget_of is not None}
    assert budget == {(0.75, 8.0), (0.9, 20.0)}  # E / (1 − m): the mixed runs' steps
    mixed = [r for r in runs if r.method != "real"]
    assert len(mixed) == 2 * 2 * 2 and {r.real_fraction for r in mixed} == {1.0}
    flags = next(r for r in mixed if r.name == "stitched_g2_s1").flags()
    assert flags[flags.index("--data.synthetic_corpus") + 1] == "stitched_g2"
    assert flags[flags.index("--mix.synthetic_share") + 1] == "0.9"
    assert flags[flags.index("--seed") + 1] == "1"


@pytest.fixture
def built(monkeypatch) -> list[list[str]]:
    """The corpora each run_study call builds first (recorded, not generated)."""
    calls: list[list[str]] = []
    monkeypatch.setattr(study, "build_corpora", lambda names, kwargs: calls.append(names) or [])
    return calls


def test_finished_runs_are_skipped_and_emitted_commands_are_the_runs_it_launches(
    tmp_path, monkeypatch, built
):
    config = small(tmp_path, method_overrides={"stitched": ["--optim.lr", "1e-3"]})
    out = Path(config.output_dir)
    write_run(out, "real_d0.25_e1_s0")  # finished: has summary.json
    launched: list[list[str]] = []
    import hf_megadocs.training.launch as launch

    monkeypatch.setattr(launch, "run_training", lambda command: launched.append(command) or 0)
    assert run_study(config) == []
    planned = plan_study(config)
    assert len(launched) == len(planned) - 1
    # Every corpus is built once, before any run (one engine for all of them).
    assert built == [["real", "simple_g1", "simple_g2", "stitched_g1", "stitched_g2"]]
    assert not any("real_d0.25_e1_s0" in " ".join(c) for c in launched)
    # A method's own flags come after the study's and before the run's identity.
    stitched = next(c for c in launched if "stitched_g2_s0" in " ".join(c))
    assert stitched[stitched.index("--optim.lr") + 1] == "1e-3"
    assert not any("--optim.lr" in c for c in launched if "simple_g" in " ".join(c))
    emit = tmp_path / "commands.sh"
    run_study(StudyConfig(**{**config.__dict__, "emit": str(emit)}))
    emitted = [shlex.split(line) for line in emit.read_text().splitlines()]

    def train_args(command: list[str]) -> list[str]:
        return command[next(i for i, a in enumerate(command) if a.endswith("train.py")) + 1 :]

    assert [train_args(c) for c in emitted] == [train_args(c) for c in launched]
    assert all(c[:2] == ["accelerate", "launch"] for c in emitted)
    assert len(built) == 1  # emitted runs build their own corpora
    launched.clear()
    assert study.execute_study(StudyConfig(**{**config.__dict__, "build_only": True})) == 0
    assert launched == [] and len(built) == 2  # built (a no-op on a full store), no run


def test_a_failed_run_is_reported_and_the_others_still_run(tmp_path, monkeypatch, built):
    import hf_megadocs.training.launch as launch

    calls = []
    monkeypatch.setattr(
        launch,
        "run_training",
        lambda command: calls.append(command) or (3 if len(calls) == 1 else 0),
    )
    failed = run_study(small(tmp_path))
    assert len(failed) == 1 and len(calls) == len(plan_study(small(tmp_path)))


def test_the_summary_places_each_method_on_the_law_with_the_seed_spread(tmp_path):
    config = small(tmp_path)
    out = Path(config.output_dir)
    full = 1_000_000
    for run in plan_study(config):
        tokens = int(full * run.real_fraction)
        if run.method == "real":
            # The best epoch count reaches the law; the other one is worse.
            loss = law_loss(tokens) + (0.0 if run.real_epochs == 2.0 else 0.05) + 0.001 * run.seed
        else:  # as good as 2× (simple) or 3× (stitched) the real data, ± seed noise
            factor = 2 if run.method == "simple" else 3
            loss = law_loss(factor * full) + (0.004 if run.seed else -0.004)
        write_run(out, run.name, method=run.method, num_generations=run.num_generations,
                  real_tokens=tokens, iid_loss=loss)  # fmt: skip
    study_result = summarise(config)
    fit, results, missing = study_result.fit, study_result.results, study_result.missing
    assert missing == [] and len(results) == 4
    assert fit.n_points == 4
    by_method = {(r.method, r.num_generations): r for r in results}
    simple, stitched = by_method[("simple", 2)], by_method[("stitched", 2)]
    assert simple.multiplier == pytest.approx(2, rel=0.1)
    assert stitched.multiplier == pytest.approx(3, rel=0.1)
    assert simple.loss_std == pytest.approx(0.004 * 2**0.5)
    lo, hi = stitched.interval
    assert lo < stitched.multiplier < hi
    assert simple.baseline == "real_d1_e8" and stitched.baseline == "real_d1_e20"
    figures = write_figures(config, study_result)
    assert [path.name for _, path in figures] == [
        "data_law.png", "loss_vs_g.png", "long_context_by_position.png",
    ]  # fmt: skip
    assert all(path.stat().st_size > 10_000 for _, path in figures)  # real drawings
    text = render_study(study_result, figures)
    assert "| stitched | 2 | 2 |" in text and "vs `real_d1_e20`" in text
    assert [p.real_fraction for p in study_result.points] == [0.125, 0.25, 0.5, 1.0]
    assert all(p.best_epochs == [2.0, 2.0] for p in study_result.points)
    assert "| 0.125 | 125,000 | 2, 2 |" in text
    assert "![i.i.d. loss vs G (mean ± std over seeds)](figures/loss_vs_g.png)" in text


def test_bad_studies_are_refused_with_the_field():
    with pytest.raises(ValueError, match="real_fractions"):
        StudyConfig(real_fractions=[0.0, 1.0])
    with pytest.raises(ValueError, match="synthetic_share"):
        StudyConfig(synthetic_share={"simple": 1.0})
    with pytest.raises(ValueError, match="method_overrides names methods .*'latent'"):
        StudyConfig(methods=["simple"], method_overrides={"latent": ["--optim.lr", "1e-3"]})
    assert study.main(["--real_fractions", "[2]"]) == 2


@pytest.mark.slow
def test_a_tiny_study_runs_end_to_end_through_the_launcher(tmp_path):
    # Real runs: accelerate launch recipes/train.py on nested subsets of a dummy-generated
    # corpus; then the same command again only summarises (every run is finished).
    tiny = [
        "--data.corpus_kwargs", "{backend: dummy, max_docs: 60, max_new_tokens: 24, "
        f"store_dir: {tmp_path / 'store'}, cache_dir: {tmp_path / 'cache'}}}",
        "--data.seq_len", "64", "--model.hidden_size", "32", "--model.intermediate_size", "64",
        "--model.num_attention_heads", "2", "--model.num_hidden_layers", "1",
        "--mix.global_batch_size", "4", "--micro_batch_size", "4", "--eval.max_docs", "8",
        "--eval.long_context_docs", "2", "--eval_every", "0", "--save_every", "0",
        "--log_with", "none",
    ]  # fmt: skip
    argv = [
        "--output_dir", str(tmp_path / "study"), "--overrides", str(tiny).replace("'", '"'),
        "--real_fractions", "[0.25, 0.5, 0.75, 1.0]", "--real_epochs", "[1]",
        "--methods", "[stitched]", "--generations", "[1]", "--mixed_epochs", "1",
        "--synthetic_share", "{stitched: 0.5}",
    ]  # fmt: skip
    assert study.main(argv) == 0
    text = (tmp_path / "study" / "study.md").read_text()
    assert "| stitched | 1 | 1 |" in text and "vs `real_d1_e2`" in text
    assert (tmp_path / "study" / "figures" / "loss_vs_g.png").is_file()
    summary = (tmp_path / "study" / "real_d0.25_e1_s0" / "config.json").read_text()
    assert '"real_fraction": 0.25' in summary
    assert study.main(argv) == 0  # all finished: nothing launched, same answer
    assert (tmp_path / "study" / "study.md").read_text() == text


@pytest.mark.parametrize("name", ["study_cpu", "study_gpu"])
def test_the_shipped_study_configs_parse_plan_and_give_valid_runs(name, tmp_path):
    from hf_megadocs.flags import parse_dataclass
    from hf_megadocs.jobs.study_plan import run_flags
    from hf_megadocs.training.presets import load_config

    root = Path(__file__).resolve().parents[2]
    config = parse_dataclass(
        StudyConfig, ["--config", str(root / f"recipes/configs/{name}.yaml")], prog="study"
    )
    runs = plan_study(config)
    # law grid + the m = 0.9 budget run (m = 0.75's 16 epochs is a grid run) + methods
    assert len(runs) == 4 * 4 * len(config.seeds) + len(config.seeds) + 3 * len(
        config.generations
    ) * len(config.seeds)
    for run in runs:  # every command line is a valid training config
        train = load_config(overrides=run_flags(config, run, tmp_path / run.name))
        assert train.data.real_fraction == run.real_fraction
        assert train.model.tokenizer == str(Path(config.output_dir).resolve() / "tokenizer")
    if name == "study_gpu":
        assert train.mixed_precision == "bf16" and train.eval.max_docs == 1000


def test_one_tokenizer_trained_on_the_full_real_split_serves_every_run(
    tmp_path, monkeypatch, built
):
    import json

    from gensim.test.utils import datapath
    from transformers import AutoTokenizer

    import hf_megadocs.training.launch as launch

    docs = tmp_path / "docs.jsonl"
    lines = Path(datapath("lee_background.cor")).read_text(encoding="latin-1").splitlines()
    docs.write_text("".join(
        json.dumps({"text": line, "source_id": str(i)}) + "\n" for i, line in enumerate(lines[:40])
    ))  # fmt: skip
    launched: list[list[str]] = []
    monkeypatch.setattr(launch, "run_training", lambda command: launched.append(command) or 0)
    config = small(
        tmp_path,
        overrides=["--data.real_path", str(docs), "--data.validation_docs", "4"],
        tokenizer_vocab=300,
    )
    assert run_study(config) == []
    folder = Path(config.output_dir).resolve() / "tokenizer"
    assert len(AutoTokenizer.from_pretrained(str(folder))) == 300
    assert all(
        command[command.index("--model.tokenizer") + 1] == str(folder) for command in launched
    )
    # The local real dataset is left to the runs; the synthetic corpora are built first.
    assert built == [["simple_g1", "simple_g2", "stitched_g1", "stitched_g2"]]
    mtime = (folder / "tokenizer.json").stat().st_mtime_ns
    run_study(config)  # a second pass keeps the tokenizer: token ids never change
    assert (folder / "tokenizer.json").stat().st_mtime_ns == mtime
