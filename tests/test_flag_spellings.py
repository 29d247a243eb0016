"""The Hugging Face flag spellings (hf_megadocs.flags.canonical_argv): dashes, bare and
negated booleans, space-separated lists, on small configs and on real subcommand configs."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from hf_megadocs.flags import ConfigError, canonical_argv, dataclass_parser, parse_dataclass


@dataclass(kw_only=True)
class Engine:
    max_docs: int | None = None
    """Documents to read; None = all."""
    enforce_eager: bool = False
    """Skip graph capture."""
    in_process: bool | None = None
    """None = decide from the platform."""


@dataclass(kw_only=True)
class Job:
    configs: list[str] = field(default_factory=lambda: ["real"])
    """Corpus configs."""
    seeds: list[int] = field(default_factory=list)
    """Seeds."""
    betas: tuple[float, float] = (0.9, 0.95)
    """Adam betas."""
    tasks: list[str] | None = None
    """None = every task."""
    mode: bool | str = "auto"
    """True, False or a mode name."""
    dry_run: bool = False
    """Only print."""
    out: str = "out"
    """Output folder."""
    engine: Engine = field(default_factory=Engine)
    """A nested section."""


def parse(*argv: str) -> Job:
    return parse_dataclass(Job, list(argv), prog="job")


def test_dashes_and_underscores_name_the_same_flag_at_every_depth():
    expected = parse("--engine.max_docs", "8", "--dry_run", "true")
    assert expected.engine.max_docs == 8 and expected.dry_run
    assert parse("--engine.max-docs", "8", "--dry-run", "true") == expected
    assert parse("--engine.max-docs=8", "--dry-run=true") == expected
    parser = dataclass_parser(Job, prog="job")
    assert canonical_argv(parser, ["--print-config"]) == ["--print_config"]


def test_values_are_never_rewritten():
    assert parse("--out", "a-b_c").out == "a-b_c"
    assert parse("--out=x-y").out == "x-y"
    assert parse("--configs", "stitched-g2", "real_x").configs == ["stitched-g2", "real_x"]


def test_a_bare_bool_flag_means_true_and_no_prefix_means_false():
    assert parse("--dry-run").dry_run is True
    assert parse("--dry_run", "--out", "x") == Job(dry_run=True, out="x")
    assert parse("--engine.enforce-eager").engine.enforce_eager is True
    on = Job(dry_run=True, engine=Engine(enforce_eager=True))
    assert parse("--no-dry-run", "--no_engine.enforce_eager", "--dry-run") == Job(dry_run=True)
    assert parse("--dry_run", "true", "--engine.enforce_eager", "true") == on
    assert parse("--dry-run", "false").dry_run is False
    for negation in ("--no_dry_run", "--no-dry-run", "--no-dry_run"):
        assert parse("--dry-run", negation).dry_run is False
    assert (
        parse("--engine.enforce-eager", "--no-engine.enforce-eager").engine.enforce_eager is False
    )


def test_optional_and_mixed_bools_keep_their_other_values():
    assert parse("--engine.in-process").engine.in_process is True
    assert parse("--no-engine.in-process").engine.in_process is False
    assert parse("--engine.in_process", "null").engine.in_process is None
    assert parse("--mode").mode is True and parse("--no-mode").mode is False
    assert parse("--mode", "fast").mode == "fast"
    assert parse("--mode", "false").mode is False


def test_negation_is_only_for_bools_and_takes_no_value():
    with pytest.raises(ConfigError, match="unrecognized arguments: --no-out"):
        parse("--no-out")
    with pytest.raises(ConfigError, match="--no-dry-run takes no value: write --dry_run x"):
        parse("--no-dry-run=x")
    with pytest.raises(ConfigError, match="unrecognized arguments: --engine.no-enforce-eager"):
        parse("--engine.no-enforce-eager")  # the no_ goes before the whole flag


def test_list_flags_take_space_separated_values_or_one_yaml_list():
    expected = Job(configs=["stitched_g2", "real"], out="x")
    assert parse("--configs", "stitched_g2", "real", "--out", "x") == expected
    assert parse("--configs", "[stitched_g2, real]", "--out", "x") == expected
    assert parse("--configs", '["stitched_g2", "real"]', "--out", "x") == expected
    assert parse("--configs=[stitched_g2, real]", "--out", "x") == expected
    assert parse("--configs", "real").configs == ["real"]
    assert parse("--configs=real").configs == ["real"]
    assert parse("--configs", "[]").configs == []
    assert parse("--seeds", "1", "-2", "3").seeds == [1, -2, 3]
    assert parse("--betas", "0.9", "0.99").betas == (0.9, 0.99)
    assert parse("--tasks", "a", "b").tasks == ["a", "b"]
    assert parse("--tasks", "null").tasks is None
    assert parse("--configs+", "x").configs == ["real", "x"]  # jsonargparse's append


def test_bad_values_and_unknown_flags_keep_their_errors():
    with pytest.raises(ConfigError, match="unrecognized arguments: --engine.max-dox 8"):
        parse("--engine.max-dox", "8")
    with pytest.raises(ConfigError, match=r"--engine.max_docs='x' is not allowed: expected int"):
        parse("--engine.max-docs", "x")
    with pytest.raises(ConfigError, match=r"--seeds=.* is not allowed"):
        parse("--seeds", "1", "x")
    with pytest.raises(ConfigError, match="unrecognized arguments: b"):
        parse("--out", "a", "b")
    with pytest.raises(ConfigError, match=r"--tasks='' is not allowed"):
        parse("--tasks", "")


def test_only_the_parsers_own_options_are_rewritten():
    parser = dataclass_parser(Job, prog="job")
    argv = ["--nope-x", "1", "-h", "--config", "a-b.yaml", "--configs", "a", "b", "--", "--x-y"]
    assert canonical_argv(parser, argv) == [
        "--nope-x", "1", "-h", "--config", "a-b.yaml", "--configs", '["a", "b"]', "--", "--x-y"
    ]  # fmt: skip


def test_help_lists_every_flag_and_the_spellings(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse("--help")
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--configs", "--engine.max_docs", "--engine.in_process", "--dry_run", "--mode"):
        assert flag in text
    assert "--no_FLAG or --no-FLAG means false" in text


def test_config_file_and_flags_combine(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("configs: [a, b]\nengine:\n  max_docs: 3\n")
    job = parse("--config", str(path), "--engine.enforce-eager", "--seeds", "4", "5")
    assert job == Job(
        configs=["a", "b"], seeds=[4, 5], engine=Engine(max_docs=3, enforce_eager=True)
    )


def test_real_generation_config():
    from hf_megadocs.generation.generate import GenerationConfig

    argv = ["--source.max-docs", "8", "--backend.data-parallel-size", "2"]
    argv += ["--backend.enforce-eager", "--no-backend.engine-in-process", "--num-samples=3"]
    config = parse_dataclass(GenerationConfig, argv, prog="hf-megadocs generate")
    assert config.source.max_docs == 8 and config.backend.data_parallel_size == 2
    assert config.backend.enforce_eager is True and config.backend.engine_in_process is False
    assert config.num_samples == 3


def test_real_push_and_report_configs():
    from hf_megadocs.analysis.report import ReportConfig
    from hf_megadocs.hub.cli import PushConfig

    push = parse_dataclass(
        PushConfig,
        ["o/x", "--configs", "stitched_g2", "real", "--dry-run", "--local-dir", "d"],
        prog="hf-megadocs push",
        positional="repo_id",
    )
    assert push.configs == ["stitched_g2", "real"] and push.dry_run and push.local_dir == "d"
    report = parse_dataclass(
        ReportConfig,
        ["runs/a", "runs/b", "--allow-unfinished", "--out", "r"],
        prog="hf-megadocs report",
        positional="run_dirs",
    )
    assert report.run_dirs == ["runs/a", "runs/b"] and report.allow_unfinished
