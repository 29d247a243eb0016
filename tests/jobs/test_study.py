"""The study runner (hf_megadocs.jobs.study): planning, launching, skipping, summarising."""

from __future__ import annotations

import json
import math
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
from hf_megadocs.jobs.study_plan import study_corpus_kwargs
from tests.analysis.rundirs import law_loss, write_run


def small(tmp_path: Path, **kwargs) -> StudyConfig:
    values = dict(
        output_dir=str(tmp_path / "study"),
        base_fraction=0.125,
        law_multiples=[1, 2, 4, 8],
        real_epochs=[1.0, 2.0],
        real_weight_decays=[0.4],
        methods=["simple", "stitched"],
        generations=[1, 2],
        synthetic_shares=[0.75, 0.9],
        mixed_epochs=[2.0],
        seeds=[0, 1],
    )
    values.update(kwargs)
    return StudyConfig(**values)


def test_the_plan_puts_methods_at_d0_and_the_curve_from_d0_to_8_d0(tmp_path):
    config = small(tmp_path)
    runs = plan_study(config)
    names = [run.name for run in runs]
    assert len(names) == len(set(names))
    law = [r for r in runs if r.kind == "law"]
    assert len(law) == 4 * 2 * 2  # sizes × epochs × seeds
    assert sorted({r.real_fraction for r in law}) == [0.125, 0.25, 0.5, 1.0]
    # Before any search has finished: each method's (m, E) points at the first seed only.
    search = [r for r in runs if r.method != "real"]
    assert {r.kind for r in search} == {"search"} and {r.seed for r in search} == {0}
    assert len(search) == 2 * 2 * 2 and {r.real_fraction for r in search} == {0.125}
    flags = next(r for r in search if r.name == "stitched_g2_m0.9_e2_s0").flags()
    assert flags[flags.index("--data.synthetic_corpus") + 1] == "stitched_g2"
    assert flags[flags.index("--data.real_fraction") + 1] == "0.125"
    assert flags[flags.index("--mix.synthetic_share") + 1] == "0.9"
    # Once stitched G=2's search has finished, its chosen point runs at the other seed and
    # real-only on D0 runs for as many steps (E / (1 − m) epochs), at every seed.
    selection = {"stitched_g2_m0.75_e2_s0": 5.0, "stitched_g2_m0.9_e2_s0": 4.9}
    runs = plan_study(config, selection)
    assert [r.name for r in runs if r.kind == "seed"] == ["stitched_g2_m0.9_e2_s1"]
    matched = [r for r in runs if r.kind == "matched"]
    assert [r.name for r in matched] == ["real_x1_e20_wd0.4_s0", "real_x1_e20_wd0.4_s1"]
    assert all(r.real_fraction == 0.125 for r in matched)


def test_corpora_are_generated_for_the_d0_documents_only(tmp_path):
    """Every run's corpus options carry generate_fraction = base_fraction, and a corpus
    built with them sends no request for any other document to the backend."""
    from hf_megadocs.corpora.load import load_corpus
    from hf_megadocs.generation.splits import in_subset
    from hf_megadocs.jobs.study_plan import run_flags
    from hf_megadocs.training.presets import load_config

    config = small(tmp_path, overrides=["--data.corpus_kwargs", "{max_docs: 60}"])
    run = plan_study(config)[0]
    train = load_config(overrides=run_flags(config, run, tmp_path / run.name))
    kwargs = train.data.corpus_kwargs
    assert kwargs == {"max_docs": 60, "generate_fraction": 0.125}
    assert train.eval.selection_fraction == 0.5
    kwargs = {**kwargs, "backend": "dummy", "max_new_tokens": 8,
              "store_dir": str(tmp_path / "store"), "cache_dir": str(tmp_path / "cache")}  # fmt: skip
    stitched = load_corpus("stitched_g2", **kwargs)["train"]
    real = load_corpus("real", **kwargs)["train"]
    assert 0 < len(stitched) < len(real) / 3
    assert all(in_subset(i, 0.125) for i in stitched["source_id"])
    assert {i for i in real["source_id"] if in_subset(i, 0.125)} == set(stitched["source_id"])
    store = "".join(p.read_text() for p in (tmp_path / "store").rglob("*.jsonl"))
    outside = [i for i in real["source_id"] if not in_subset(i, 0.125)]
    assert store and not any(i in store for i in outside)  # no request for them was paid
    with pytest.raises(ValueError, match="generate_fraction"):
        study_corpus_kwargs(small(tmp_path, overrides=[
            "--data.corpus_kwargs", "{generate_fraction: 0.5}"]))  # fmt: skip


@pytest.fixture
def built(monkeypatch) -> list[list[str]]:
    """The corpora each run_study call builds first (recorded, not generated)."""
    calls: list[list[str]] = []
    monkeypatch.setattr(study, "build_corpora", lambda names, kwargs: calls.append(names) or [])
    return calls


def test_finished_runs_are_skipped_and_emitted_commands_are_the_runs_it_launches(
    tmp_path, monkeypatch, built
):
    config = small(tmp_path, method_overrides={"stitched": ["--optim.lr", "1e-3"],
                                               "stitched_g2": ["--optim.lr", "2e-3"]})  # fmt: skip
    out = Path(config.output_dir)
    write_run(out, "real_x2_e1_wd0.4_s0")  # finished: has summary.json
    launched: list[list[str]] = []
    import hf_megadocs.training.launch as launch

    monkeypatch.setattr(launch, "run_training", lambda command: launched.append(command) or 0)
    assert run_study(config) == []
    planned = plan_study(config)
    assert len(launched) == len(planned) - 1
    # Every corpus is built once, before any run (one engine for all of them).
    assert built == [["real", "simple_g1", "simple_g2", "stitched_g1", "stitched_g2"]]
    assert not any("real_x2_e1_wd0.4_s0" in " ".join(c) for c in launched)
    # A method's own flags come after the study's, then its G's, then the run's identity.
    stitched = next(c for c in launched if "stitched_g2_m0.9_e2_s0" in " ".join(c))
    lrs = [stitched[i + 1] for i, a in enumerate(stitched) if a == "--optim.lr"]
    assert lrs == ["1e-3", "2e-3"]
    assert not any("--optim.lr" in c for c in launched if "simple_g" in " ".join(c))
    emit = tmp_path / "commands.sh"
    run_study(StudyConfig(**{**config.__dict__, "emit": str(emit)}))
    emitted = [shlex.split(line) for line in emit.read_text().splitlines()]

    def train_args(command: list[str]) -> list[str]:
        return command[command.index("hf_megadocs.train") + 1 :]

    assert [train_args(c) for c in emitted] == [train_args(c) for c in launched]
    assert all(c[:2] == ["accelerate", "launch"] for c in emitted)
    assert len(built) == 1  # emitted runs build their own corpora
    launched.clear()
    assert study.execute_study(StudyConfig(**{**config.__dict__, "build_only": True})) == 0
    assert launched == [] and len(built) == 2  # built (a no-op on a full store), no run


def test_a_method_seeds_its_chosen_point_once_its_search_finishes(tmp_path, monkeypatch, built):
    """run_study re-plans after the search: the chosen point (lowest selection loss) runs
    at the other seeds, with the compute-matched real-only runs, in the same call."""
    import hf_megadocs.training.launch as launch

    config = small(tmp_path, methods=["stitched"], generations=[2])
    out = Path(config.output_dir)

    def train(command: list[str]) -> int:
        run_dir = Path(command[command.index("--output_dir") + 1])
        share = float(command[command.index("--mix.synthetic_share") + 1])
        write_run(out, run_dir.name, selection_loss=5.0 - share)  # m = 0.9 wins
        return 0

    monkeypatch.setattr(launch, "run_training", train)
    assert run_study(config) == []
    assert (out / "stitched_g2_m0.9_e2_s1" / "summary.json").is_file()
    assert not (out / "stitched_g2_m0.75_e2_s1").exists()
    assert (out / "real_x1_e20_wd0.4_s1" / "summary.json").is_file()  # 2 / (1 − 0.9) epochs


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


def _simulated_study(config: StudyConfig, truth: dict[str, float], base: int = 125_000) -> None:
    """Finished run folders on the power law: real-only at each size (e2 the best), each
    method as good as ``truth[method]`` × D0 of real data, with seed noise."""
    out = Path(config.output_dir)
    selection: dict[str, float] = {}
    for _ in range(2):  # the search first, then the seeds it chose
        for run in plan_study(config, selection):
            if (out / run.name).exists():
                continue
            noise = (0.004, -0.004, 0.001)[run.seed]
            if run.method == "real":
                tokens = int(base * run.multiple)
                loss = law_loss(tokens) + (0.0 if run.real_epochs == 2.0 else 0.05) + noise
            else:
                tokens = base
                worse = 0.0 if run.synthetic_share == 0.75 else 0.03
                loss = law_loss(truth[run.method] * base) + worse + noise
            write_run(out, run.name, method=run.method, num_generations=run.num_generations,
                      real_tokens=tokens, iid_loss=loss, selection_loss=loss + 0.001)  # fmt: skip
            selection[run.name] = loss + 0.001


def test_the_summary_interpolates_each_method_with_a_95_interval(tmp_path):
    config = small(tmp_path, seeds=[0, 1, 2])
    _simulated_study(config, {"simple": 2.0, "stitched": 3.0})
    result = summarise(config)
    assert result.missing == [] and len(result.results) == 4
    assert (
        result.multiples == [1, 2, 4, 8] and [p.setting for p in result.points] == ["e2_wd0.4"] * 4
    )
    by_method = {(r.method, r.num_generations): r for r in result.results}
    simple, stitched = by_method[("simple", 2)], by_method[("stitched", 2)]
    assert simple.point == (0.75, 2.0)  # m = 0.9 was worse on the selection documents
    assert simple.estimate.multiplier == pytest.approx(2, rel=0.1)
    assert stitched.estimate.multiplier == pytest.approx(3, rel=0.1)
    assert stitched.estimate.low < stitched.estimate.multiplier < stitched.estimate.high
    assert stitched.estimate.level == 0.95 and stitched.estimate.seeds == 3
    assert simple.matched == "real_x1_e8_wd0.4"
    figures = write_figures(config, result)
    assert [path.name for _, path in figures] == [
        "data_law.png", "loss_vs_g.png", "long_context_by_position.png",
    ]  # fmt: skip
    assert all(path.stat().st_size > 10_000 for _, path in figures)  # real drawings
    text = render_study(result, figures)
    assert "| stitched | 2 | 0.75, 2 | 3 |" in text and "vs `real_x1_e8_wd0.4`" in text
    assert "| 1·D0 (1.00×) | 125,000 | e2_wd0.4 (e2_wd0.4, e2_wd0.4, e2_wd0.4) |" in text
    assert "Chosen at the largest epochs of the grid" in text  # e2 is the real grid's top
    assert "95% bootstrap" in text and "Generator randomness is not in" in text
    assert "real-only on D0 |" in text  # the long-context table has its baseline row
    assert text.startswith("# Data-efficiency study\n\n**Trained on D0 = 125,000 real tokens")


def test_a_one_seed_study_says_it_has_no_seed_spread(tmp_path):
    config = small(tmp_path, seeds=[0])
    _simulated_study(config, {"simple": 2.0, "stitched": 20.0})
    text = render_study(summarise(config))
    row = next(line for line in text.splitlines() if line.startswith("| simple | 2 |"))
    assert "2.0" in row and "[no seed spread: 1 seed]" in row
    row = next(line for line in text.splitlines() if line.startswith("| stitched | 2 |"))
    assert "> 8× (beyond the measured sizes)" in row


def test_bad_studies_are_refused_with_the_field():
    with pytest.raises(ValueError, match="law_multiples"):
        StudyConfig(base_fraction=0.25, law_multiples=[1, 8])
    with pytest.raises(ValueError, match="law_multiples must include 1"):
        StudyConfig(law_multiples=[2, 4])
    with pytest.raises(ValueError, match="synthetic_shares"):
        StudyConfig(synthetic_shares=[1.0])
    with pytest.raises(ValueError, match="selection_fraction"):
        StudyConfig(selection_fraction=0)
    with pytest.raises(ValueError, match="method_overrides names methods .*'latent'"):
        StudyConfig(methods=["simple"], method_overrides={"latent": ["--optim.lr", "1e-3"]})
    assert study.main(["--base_fraction", "2"]) == 2


@pytest.mark.slow
def test_a_tiny_study_runs_end_to_end_through_the_launcher(tmp_path):
    # Real runs: accelerate launch recipes/train.py on nested subsets of a dummy-generated
    # corpus; then the same command again only summarises (every run is finished).
    tiny = [
        "--data.corpus_kwargs", "{backend: dummy, max_docs: 120, max_new_tokens: 24, "
        f"validation_fraction: 0.25, store_dir: {tmp_path / 'store'}, "
        f"cache_dir: {tmp_path / 'cache'}}}",
        "--data.seq_len", "64", "--model.hidden_size", "32", "--model.intermediate_size", "64",
        "--model.num_attention_heads", "2", "--model.num_hidden_layers", "1",
        "--mix.global_batch_size", "4", "--micro_batch_size", "4", "--eval.max_docs", "8",
        "--eval.long_context_docs", "2", "--eval_every", "0", "--save_every", "0",
        "--log_with", "none",
    ]  # fmt: skip
    argv = [
        "--output_dir", str(tmp_path / "study"), "--overrides", str(tiny).replace("'", '"'),
        "--base_fraction", "0.25", "--law_multiples", "[1, 2]", "--real_epochs", "[1]",
        "--real_weight_decays", "[0.4]", "--methods", "[stitched]", "--generations", "[1]",
        "--mixed_epochs", "[1]", "--synthetic_shares", "[0.5]", "--seeds", "[0, 1]",
    ]  # fmt: skip
    assert study.main(argv) == 0
    out = tmp_path / "study"
    text = (out / "study.md").read_text()
    assert "| stitched | 1 | 0.5, 1 | 2 |" in text and "vs `real_x1_e2_wd0.4`" in text
    assert (out / "figures" / "loss_vs_g.png").is_file()
    config = json.loads((out / "real_x2_e1_wd0.4_s0" / "config.json").read_text())
    assert config["data"]["real_fraction"] == 0.5
    summary = json.loads((out / "stitched_g1_m0.5_e1_s1" / "summary.json").read_text())
    assert (
        summary["real_tokens"]
        == json.loads((out / "real_x1_e1_wd0.4_s1" / "summary.json").read_text())["real_tokens"]
    )  # D0 both
    assert (
        math.isfinite(summary["selection_loss"])
        and summary["selection_loss"] != summary["iid_loss"]
    )
    assert study.main(argv) == 0  # all finished: nothing launched, same answer
    assert (out / "study.md").read_text() == text


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
    law = len(config.law_multiples) * len(config.real_epochs) * len(config.real_weight_decays)
    search = (
        len(config.methods)
        * len(config.generations)
        * len(config.synthetic_shares)
        * len(config.mixed_epochs)
    )
    assert len(runs) == law * len(config.seeds) + search
    assert max(config.law_multiples) >= 8 and len(config.law_multiples) >= 5
    for run in runs:  # every command line is a valid training config
        train = load_config(overrides=run_flags(config, run, tmp_path / run.name))
        assert train.data.real_fraction == run.real_fraction
        assert train.data.corpus_kwargs["generate_fraction"] == config.base_fraction
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


def test_a_rerun_on_changed_generations_stops_instead_of_mixing_them(tmp_path, monkeypatch):
    """corpora.json pins each corpus's content hash; once a method run has trained on a
    corpus, a rerun whose store gives other text for it refuses to go on."""
    from hf_megadocs.jobs.study import build_study_corpora

    config = small(tmp_path, methods=["stitched"], generations=[1])
    hashes = {"real": "r0", "stitched_g1": "s0"}
    monkeypatch.setattr(study, "build_corpora", lambda names, kwargs: [
        {"config": name, "content_hash": hashes[name]} for name in names])  # fmt: skip
    build_study_corpora(config)
    hashes["stitched_g1"] = "s1"
    build_study_corpora(config)  # no run trained on it yet: the new generations are pinned
    hashes["stitched_g1"] = "s2"
    stitched, real = plan_study(config)[-1], plan_study(config)[0]
    assert (stitched.name, real.name) == ("stitched_g1_m0.9_e2_s0", "real_x1_e1_wd0.4_s0")
    with pytest.raises(ValueError, match=r"stitched_g1 \(s1 → s2\)"):
        build_study_corpora(config, finished=[stitched])
    hashes["real"] = "r1"  # the real corpus is never generated: no pin to break
    hashes["stitched_g1"] = "s1"
    build_study_corpora(config, finished=[stitched, real])
