"""The influence scorer on a real (tiny) checkpoint of recipes/train.py: θ′ learns the
reference set, scores are batch-independent, the source value is cached, bad input is refused."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from hf_megadocs.generation.sources import SourceConfig
from hf_megadocs.tuning.influence import InfluenceConfig, InfluenceScorer, resolve_checkpoint_dir

REFERENCE = [
    "The orbital station Kepler relays telemetry from the lunar rover every ninety minutes, "
    "and engineers on the station check the battery, the wheels and the camera before "
    f"sending commands back to the rover. Log entry {i}."
    for i in range(8)
]
LIKE_REFERENCE = (
    "The orbital station Kepler relays telemetry from the lunar rover every ninety minutes, "
    "and engineers check the battery and the camera."
)
UNRELATED = (
    "Quarterly revenue grew on strong demand for cloud software subscriptions, while the "
    "board approved a new share buyback."
)


def _jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def _config(checkpoint: Path, reference_file: Path, **overrides) -> InfluenceConfig:
    settings = {
        "checkpoint": str(checkpoint),
        "reference": SourceConfig(source=str(reference_file)),
        "reference_steps": 10,
        "warmup_steps": 0,
        "learning_rate": 1e-3,
        "batch_size": 4,
        "max_tokens": 64,
        "min_output_chars": 20,
        "device": "cpu",
    }
    return InfluenceConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def run_dir(tiny_run) -> Path:
    return tiny_run


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    return _jsonl(tmp_path_factory.mktemp("reference") / "reference.jsonl", REFERENCE)


@pytest.fixture(scope="module")
def scorer(run_dir, reference) -> InfluenceScorer:
    return InfluenceScorer(_config(run_dir, reference))


@pytest.mark.slow
def test_checkpoint_resolves_from_run_folder_or_step_folder(run_dir):
    step = run_dir / "checkpoints" / "step_2"
    assert resolve_checkpoint_dir(run_dir) == step
    assert resolve_checkpoint_dir(step) == step


@pytest.mark.slow
def test_text_like_the_reference_has_more_influence(scorer):
    ids = scorer._ids(LIKE_REFERENCE)
    shuffled_ids = list(ids)
    random.Random(0).shuffle(shuffled_ids)
    shuffled = scorer.tokenizer.decode(shuffled_ids)
    like, shuffled_score, unrelated = scorer.influence([LIKE_REFERENCE, shuffled, UNRELATED])
    # Measured: like 0.59, shuffled 0.42, unrelated 0.03 (CPU, deterministic seeds).
    # θ′ trained on the reference: it predicts a text like it better than θ does...
    assert like > 0.1
    # ...and better than the same tokens in random order, or than an unrelated text.
    assert like > shuffled_score + 0.05
    assert like > unrelated + 0.1
    # Deterministic: scoring again gives the same numbers.
    assert scorer.influence([LIKE_REFERENCE]) == pytest.approx([like], abs=1e-6)


@pytest.mark.slow
def test_score_alone_equals_score_in_a_padded_batch(scorer):
    longer = [UNRELATED + " " + REFERENCE[0], REFERENCE[1] + " " + UNRELATED + " " + UNRELATED]
    assert all(len(scorer._ids(t)) > len(scorer._ids(LIKE_REFERENCE)) for t in longer)
    alone = scorer.influence([LIKE_REFERENCE])[0]
    in_batch = scorer.influence([longer[0], LIKE_REFERENCE, longer[1]])[1]
    assert in_batch == pytest.approx(alone, abs=1e-5)
    for model in (scorer.model, scorer.tuned):
        ce_alone = scorer.cross_entropy(model, [LIKE_REFERENCE])[0]
        ce_batch = scorer.cross_entropy(model, [longer[1], LIKE_REFERENCE])[1]
        assert ce_batch == pytest.approx(ce_alone, abs=1e-5)


@pytest.mark.slow
def test_one_token_text_scores_nan(scorer):
    import math

    scores = scorer.influence(["a", LIKE_REFERENCE])
    assert math.isnan(scores[0]) and not math.isnan(scores[1])


@pytest.mark.slow
def test_reward_is_output_minus_source_and_zero_for_short_outputs(scorer):
    scorer._source_influence.clear()
    source = UNRELATED
    short = "too short"  # under min_output_chars=20
    assert len(short) < scorer.config.min_output_chars
    rewards = scorer.reward([short, LIKE_REFERENCE], [source, source])
    assert rewards[0] == 0.0
    expected = scorer.influence([LIKE_REFERENCE])[0] - scorer.influence([source])[0]
    assert rewards[1] == pytest.approx(expected, abs=1e-6)
    assert len(scorer._source_influence) == 1


@pytest.mark.slow
def test_source_influence_is_computed_once_per_document(scorer):
    scorer._source_influence.clear()
    scorer.reward([LIKE_REFERENCE], [UNRELATED])
    assert len(scorer._source_influence) == 1
    # A second call with the same source reads the cache: overwrite the cached value and
    # the reward moves by exactly that much.
    (key,) = scorer._source_influence
    first = scorer.reward([LIKE_REFERENCE], [UNRELATED])[0]
    scorer._source_influence[key] += 1.0
    second = scorer.reward([LIKE_REFERENCE, LIKE_REFERENCE], [UNRELATED, UNRELATED])
    assert second == pytest.approx([first - 1.0, first - 1.0], abs=1e-6)
    assert len(scorer._source_influence) == 1
    scorer.reward([LIKE_REFERENCE], [REFERENCE[0]])
    assert len(scorer._source_influence) == 2
    scorer._source_influence.clear()


def test_missing_or_non_checkpoint_folder_is_refused(tmp_path):
    for path in (tmp_path / "missing", tmp_path):
        with pytest.raises(ValueError, match="recipes/train.py"):
            resolve_checkpoint_dir(path)
        with pytest.raises(ValueError, match="neither a checkpoint folder"):
            InfluenceScorer(InfluenceConfig(checkpoint=str(path), device="cpu"))
    with pytest.raises(ValueError, match="checkpoint is unset"):
        InfluenceScorer(InfluenceConfig())


def test_bad_influence_settings_are_refused():
    with pytest.raises(ValueError, match="reference_steps"):
        InfluenceConfig(reference_steps=0)
    with pytest.raises(ValueError, match="learning_rate"):
        InfluenceConfig(learning_rate=0)


@pytest.mark.slow
def test_checkpoint_without_weights_is_refused(run_dir, reference, tmp_path):
    import shutil

    broken = tmp_path / "step_2"
    shutil.copytree(run_dir / "checkpoints" / "step_2", broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="no model.safetensors"):
        InfluenceScorer(_config(broken, reference))


@pytest.mark.slow
def test_empty_reference_set_is_refused(run_dir, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="reference set .* has no documents"):
        InfluenceScorer(_config(run_dir, empty))
    blank = _jsonl(tmp_path / "blank.jsonl", ["", "   "])
    with pytest.raises(ValueError, match="has no documents"):
        InfluenceScorer(
            _config(run_dir, blank, reference=SourceConfig(source=str(blank), on_bad_input="skip"))
        )


@pytest.mark.slow
def test_reference_documents_the_run_evaluates_on_are_dropped_and_counted(
    run_dir, reference, tmp_path
):
    from hf_megadocs.training.config import TrainConfig
    from hf_megadocs.training.data.streams import real_training_split

    info = json.loads((run_dir / "checkpoints" / "step_2" / "config.json").read_text())
    train_config = TrainConfig.from_dict(info)
    _, _, validation, _ = real_training_split(train_config)
    held_out = list(validation[train_config.data.text_column])[:2]
    mixed = _jsonl(tmp_path / "mixed.jsonl", REFERENCE[:3] + held_out)
    scorer = InfluenceScorer(_config(run_dir, mixed))
    assert scorer.reference_counts == {"read": 5, "in_evaluation_splits": 2}
    only_held_out = _jsonl(tmp_path / "held_out.jsonl", held_out)
    with pytest.raises(ValueError, match="all 2 influence reference documents are in the run"):
        InfluenceScorer(_config(run_dir, only_held_out))
