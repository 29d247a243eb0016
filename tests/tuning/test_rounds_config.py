"""RoundsConfig refuses, before anything trains, a rounds run whose influence reward (for
tuning or for selection) has no reference task to train θ′ on."""

from __future__ import annotations

import pytest

from hf_megadocs.tuning.config import TuneConfig
from hf_megadocs.tuning.influence import InfluenceConfig
from hf_megadocs.tuning.reference_set import ReferenceConfig
from hf_megadocs.tuning.rounds import RoundsConfig
from hf_megadocs.tuning.selection import SelectionConfig


def test_a_round_that_tunes_with_influence_needs_a_reference_set_at_once(tmp_path):
    with pytest.raises(ValueError, match=r"--tune\.influence\.reference\.source PATH"):
        RoundsConfig(run_dir=str(tmp_path), trigger="now")


def test_rounds_without_influence_need_no_reference_set(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    config = RoundsConfig(
        run_dir=str(tmp_path),
        trigger="now",
        operations=["rephrase"],
        adapters={"rephrase": str(adapter)},
        selection=SelectionConfig(mode="all"),
    )
    assert not config.uses_influence


def test_tuning_with_influence_and_a_reference_set_is_accepted(tmp_path):
    tune = TuneConfig(influence=InfluenceConfig(reference=ReferenceConfig(source="analogies")))
    config = RoundsConfig(run_dir=str(tmp_path), trigger="now", tune=tune)
    assert config.uses_influence
