"""Command lines from config dataclasses (hf_megadocs.flags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from hf_megadocs.flags import ConfigError, dataclass_parser, parse_dataclass


@dataclass(kw_only=True)
class Section:
    share: float = 0.5
    """m: the synthetic share, in [0, 1)."""

    def __post_init__(self) -> None:
        if not 0 <= self.share < 1:
            raise ValueError(f"Section.share must be in [0, 1), got {self.share}.")


@dataclass(kw_only=True)
class Job:
    inputs: list[str] = field(default_factory=list)
    """Input folders."""
    precision: Literal["no", "bf16"] = "no"
    """Mixed precision."""
    steps: int | None = None
    """Step cap, in optimizer steps."""
    section: Section = field(default_factory=Section)
    """A nested section."""


def test_every_field_is_a_flag_with_its_docstring_and_default():
    text = dataclass_parser(Job, prog="job").format_help()
    for flag, words in {
        "--inputs": "Input folders.",
        "--precision": "Mixed precision.",
        "--steps": "Step cap, in optimizer steps.",
        "--section.share": "m: the synthetic share",
    }.items():
        assert flag in text and words in text
    assert "default: no" in text and "default: 0.5" in text


def test_nested_flags_yaml_and_positionals(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("precision: no\nsection:\n  share: 0.75\n")  # YAML 1.1 would read a bool
    job = parse_dataclass(
        Job, ["a", "b", "--config", str(path), "--steps", "3"], prog="job", positional="inputs"
    )
    assert job == Job(inputs=["a", "b"], precision="no", steps=3, section=Section(share=0.75))
    defaults = parse_dataclass(Job, [], prog="job", defaults={"section.share": 0.25})
    assert defaults.section.share == 0.25


def test_errors_name_the_flag_and_what_is_allowed():
    with pytest.raises(ConfigError, match=r"--steps='x' is not allowed: expected int"):
        parse_dataclass(Job, ["--steps", "x"], prog="job")
    with pytest.raises(ConfigError, match=r"Section.share must be in \[0, 1\)"):
        parse_dataclass(Job, ["--section.share", "2"], prog="job")
    with pytest.raises(ConfigError, match="unrecognized arguments"):
        parse_dataclass(Job, ["--nope", "1"], prog="job")
