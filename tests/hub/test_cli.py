"""hf-megadocs push on the command line (hf_megadocs.hub.cli): flags, exit codes."""

from __future__ import annotations

import json

import pytest

from hf_megadocs.hub.cli import PushConfig, main


def test_push_flags_are_parsed_and_typed():
    from hf_megadocs.flags import ConfigError, parse_dataclass

    argv = ["o/x", "--configs", "[stitched_g2, real]", "--corpus_kwargs"]
    config = parse_dataclass(
        PushConfig,
        [*argv, "{max_docs: 6, temperature: 0.5, store_dir: /x}"],
        prog="push",
        positional="repo_id",
    )
    assert config.repo_id == "o/x" and config.configs == ["stitched_g2", "real"]
    assert config.corpus_kwargs == {"max_docs": 6, "temperature": 0.5, "store_dir": "/x"}
    with pytest.raises(ConfigError, match="corpus_kwargs"):
        parse_dataclass(PushConfig, [*argv], prog="push", positional="repo_id")
    with pytest.raises(ConfigError, match="expected one REPO_ID"):
        parse_dataclass(
            PushConfig, ["a", "b", "--configs", "[real]"], prog="push", positional="repo_id"
        )


def test_cli_reports_bad_input_with_exit_codes(tmp_path, capsys):
    from hf_megadocs.cli import main as cli_main

    args = ["--configs", "[real]", "--dry_run", "true", "--local_dir", str(tmp_path / "out")]
    assert cli_main(["push", "bad--id", *args]) == 2
    assert "not a valid Hub repository id" in capsys.readouterr().err
    built = {"store_dir": str(tmp_path / "s"), "cache_dir": str(tmp_path / "c"), "max_docs": 2}
    assert main(["o/x", *args, "--corpus_kwargs", json.dumps(built)]) == 1
    assert "were never built" in capsys.readouterr().err
    assert main(["o/x", *args, "--corpus_kwargs", '{"no_such_knob": 1}']) == 2
    assert "Unknown hf_megadocs config knob(s) ['no_such_knob']" in capsys.readouterr().err
