"""The influence scorer on a real (tiny) checkpoint of recipes/train.py: θ′ learns the
reference set at the checkpoint's own length, scores are batch-independent, the source value
is cached, bad input is refused. The fast tests below cover the pieces on their own: the
length choice, answers-only loss, the reference set's disjointness and the output floor."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from hf_megadocs.tuning.influence import InfluenceConfig, InfluenceScorer, resolve_checkpoint_dir
from hf_megadocs.tuning.reference_set import ReferenceConfig

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
        "reference": ReferenceConfig(source=str(reference_file)),
        "reference_steps": 10,
        "warmup_steps": 0,
        "learning_rate": 1e-3,
        "batch_size": 4,
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
    # Scored and θ′ trained at the checkpoint's own length (data.seq_len=64), unasked.
    assert scorer.config.max_tokens is None and scorer.length == 64
    assert scorer.reference_counts["length"] == 64
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
            InfluenceScorer(
                InfluenceConfig(checkpoint=str(path), reference=ReferenceConfig(source="analogies"))
            )
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
    with pytest.raises(ValueError, match="reference set .* has no usable examples"):
        InfluenceScorer(_config(run_dir, empty))
    blank = _jsonl(tmp_path / "blank.jsonl", ["", "   "])
    with pytest.raises(ValueError, match="has no usable examples"):
        InfluenceScorer(
            _config(
                run_dir, blank, reference=ReferenceConfig(source=str(blank), on_bad_input="skip")
            )
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
    scorer = InfluenceScorer(_config(run_dir, mixed, max_tokens=2048))
    assert scorer.length == 64  # 2,048 asked: lowered to the length the checkpoint trained at
    counts = scorer.reference_counts
    assert (counts["kind"], counts["read"], counts["in_evaluation"]) == ("text", 5, 2)
    assert counts["examples"] == 3
    only_held_out = _jsonl(tmp_path / "held_out.jsonl", held_out)
    with pytest.raises(ValueError, match="all 2 influence reference examples overlap the run"):
        InfluenceScorer(_config(run_dir, only_held_out))


# ---------------------------------------------------------------- fast: the pieces


def test_length_is_the_checkpoints_own_unless_shorter_is_asked(caplog):
    from hf_megadocs.tuning.influence import context_length

    assert context_length(256, 512, None) == 256  # tiny_cpu: trained at 256, positions 512
    assert context_length(256, 512, 64) == 64
    assert context_length(None, 512, None) == 512
    assert context_length(4096, 2048, None) == 2048
    with caplog.at_level("WARNING"):
        assert context_length(256, 512, 2048) == 256
    assert "past the checkpoint's trained length 256" in caplog.text
    with pytest.raises(ValueError, match="set InfluenceConfig.max_tokens"):
        context_length(None, None, None)


def test_prompt_answer_rows_mask_prompts_and_pack_whole_examples():
    from collections import Counter

    from hf_megadocs.tuning.reference_set import IGNORE, reference_rows

    eos, counts = 2, Counter()
    examples = [([5, 6, 7], [8, 9]), ([10], [11, 12]), ([13] * 8, [14])]
    rows = reference_rows("prompt_answer", examples, 10, eos, counts)
    # 6 + 4 tokens fill the first row; the third (exactly 10 tokens) gets a row of its own
    assert rows[0] == (
        [5, 6, 7, 8, 9, 2, 10, 11, 12, 2],
        [IGNORE, IGNORE, IGNORE, 8, 9, 2, IGNORE, 11, 12, 2],
    )
    assert rows[1] == ([13] * 8 + [14, 2], [IGNORE] * 8 + [14, 2])
    assert reference_rows("prompt_answer", [([1] * 10, [3])], 10, eos, counts) == []
    assert counts["too_long"] == 1
    text_rows = reference_rows("text", [([], [5, 6, 7]), ([], [8, 9])], 3, eos)
    assert text_rows == [([5, 6, 7], [5, 6, 7]), ([2, 8, 9], [2, 8, 9])]  # every token counts


def test_answers_only_loss_matches_a_hand_computation():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hf_megadocs.tuning.influence import reference_loss
    from hf_megadocs.tuning.reference_set import collate, reference_rows

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
    ).eval()  # fmt: skip
    rows = reference_rows("prompt_answer", [([5, 6, 7, 3], [8, 9])], 16, 2)
    short = reference_rows("prompt_answer", [([4], [12])], 16, 2)
    batch = collate(rows + short, pad_id=0)
    assert batch["attention_mask"].tolist()[1] == [1, 1, 1, 0, 0, 0, 0]
    with torch.no_grad():
        loss = reference_loss(model, batch).item()
        # by hand: −log p(next token) at the positions followed by an answer token or its
        # end-of-text, and nowhere else (not the prompt, not the padding)
        terms = []
        for ids, targets in (
            ([5, 6, 7, 3, 8, 9, 2], {3: 8, 4: 9, 5: 2}),
            ([4, 12, 2], {0: 12, 1: 2}),
        ):
            logp = model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
            terms += [-logp[pos, target].item() for pos, target in targets.items()]
        all_tokens = model(input_ids=torch.tensor([[5, 6, 7, 3, 8, 9, 2]]),
                           labels=torch.tensor([[5, 6, 7, 3, 8, 9, 2]])).loss.item()  # fmt: skip
    assert len(terms) == 5
    assert loss == pytest.approx(sum(terms) / len(terms), abs=1e-5)
    assert abs(loss - all_tokens) > 1e-3  # the prompt really is left out


def _jsonl_records(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_reference_files_are_read_as_prompt_answer_or_plain_text(tmp_path):
    from hf_megadocs.tuning.reference_set import ANALOGIES, ReferenceExample, load_reference

    qa = _jsonl_records(tmp_path / "qa.jsonl", [
        {"prompt": "Q: 2+2?\nA:", "answer": " 4"},
        {"prompt": "Q: capital of Peru?\nA:", "answer": ""},
        {"prompt": "Q: no answer"},
        {"prompt": "Q: colour of snow?\nA:", "answer": " white"},
    ])  # fmt: skip
    got = load_reference(ReferenceConfig(source=str(qa), on_bad_input="skip"))
    assert got.kind == "prompt_answer"
    assert got.examples == [ReferenceExample("Q: 2+2?\nA:", " 4"),
                            ReferenceExample("Q: colour of snow?\nA:", " white")]  # fmt: skip
    assert got.counts == {"read": 4, "dropped:empty_answer": 1, "dropped:missing_answer": 1}
    with pytest.raises(ValueError, match=r"qa.jsonl:2 \(empty_answer\)"):
        load_reference(ReferenceConfig(source=str(qa), on_bad_input="error"))
    renamed = _jsonl_records(tmp_path / "renamed.jsonl", [{"q": "Say hi.", "a": " hi"}])
    got = load_reference(ReferenceConfig(source=str(renamed), prompt_column="q", answer_column="a"))
    assert got.kind == "prompt_answer" and got.examples == [ReferenceExample("Say hi.", " hi")]
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"prompt": ["Say yes.", "Say no."], "answer": [" yes", " no"]})
    pq.write_table(table, tmp_path / "qa.parquet")  # no text column: still prompt/answer
    got = load_reference(ReferenceConfig(source=str(tmp_path / "qa.parquet")))
    assert got.kind == "prompt_answer" and [e.answer for e in got.examples] == [" yes", " no"]
    text = _jsonl(tmp_path / "text.jsonl", REFERENCE[:3])
    got = load_reference(ReferenceConfig(source=str(text)))
    assert got.kind == "text" and [e.text for e in got.examples] == REFERENCE[:3]
    assert all(e.prompt == "" for e in got.examples)
    analogies = load_reference(ReferenceConfig(source=ANALOGIES, max_examples=3))
    assert analogies.kind == "prompt_answer" and len(analogies.examples) == 3
    first = analogies.examples[0]
    assert "Athens is to Greece as Baghdad is to" in first.prompt and first.answer == " Iraq."


def test_no_or_evaluated_reference_is_refused_with_how_to_give_one(tmp_path):
    from hf_megadocs.tuning.reference_set import refuse_evaluated_source

    how = r"--influence\.reference\.source PATH: a \.jsonl, \.json or \.parquet file"
    columns = "with 'prompt' and 'answer' columns"
    with pytest.raises(ValueError, match=how) as error:
        InfluenceConfig(checkpoint="runs/pretrain")
    assert columns in str(error.value) and "no reference set" in str(error.value)
    for embedded in ("embedded-long", "embedded"):
        with pytest.raises(ValueError, match="the embedded runs evaluate on") as error:
            refuse_evaluated_source(ReferenceConfig(source=embedded), [None, None])
        assert columns in str(error.value)
    own = _jsonl(tmp_path / "real.jsonl", REFERENCE)
    with pytest.raises(ValueError, match="is the run's own data"):
        refuse_evaluated_source(ReferenceConfig(source=str(own)), [str(own), None])
    refuse_evaluated_source(ReferenceConfig(source=str(own)), [str(tmp_path / "other"), None])


def test_reference_items_overlapping_evaluation_documents_are_dropped_and_counted():
    from hf_megadocs.tuning.reference_set import (
        ReferenceExample,
        ReferenceSet,
        drop_evaluation_overlap,
    )

    evaluation = [
        (
            "The committee met on Tuesday and agreed that the new bridge over the river would "
            "open to traffic in the spring after a final safety inspection by the state engineers."
        ),
        "Paris",
    ]
    kept = ReferenceExample("Q: What is the boiling point of water at sea level?\nA:", " 100 C.")
    inside = ReferenceExample(
        "Summarise:",
        " agreed that the new bridge over the river would open to traffic in the "
        "spring after a final check",
    )  # a 13-word run of the first evaluation document
    same = ReferenceExample("Q: capital of France?\nA:", "Paris")  # identical to a document
    reference = ReferenceSet("prompt_answer", [kept, inside, same])
    result = drop_evaluation_overlap(reference, evaluation)
    assert result.examples == [kept]
    assert result.counts["in_evaluation"] == 2


def test_an_unreachable_output_floor_is_refused_and_an_unset_one_fits_the_cap(caplog):
    from transformers import AutoTokenizer

    from hf_megadocs.generation.embedded import embedded_corpus_path, resolve_generator
    from hf_megadocs.tuning.config import TuneConfig
    from hf_megadocs.tuning.influence_reward import (
        chars_per_token,
        output_floor,
        resolve_min_output_chars,
    )

    tokenizer = AutoTokenizer.from_pretrained(resolve_generator(None)[0])
    lines = Path(embedded_corpus_path()).read_text(encoding="latin-1").splitlines()[:32]
    per_token = chars_per_token(tokenizer, lines)
    assert 3.0 < per_token < 6.0  # English prose under SmolLM2's tokenizer
    reference = ReferenceConfig(source="analogies")

    def config(**influence) -> TuneConfig:
        return TuneConfig(profile="cpu", influence=InfluenceConfig(
            checkpoint="runs/pretrain", reference=reference, **influence))  # fmt: skip

    # The case: cpu profile (96-token completions) with SynPro's 500 characters.
    assert config().max_completion_length == 96
    with pytest.raises(ValueError, match="min_output_chars=500 cannot be reached") as error:
        output_floor(config(min_output_chars=500), tokenizer, lines)
    assert "--max_completion_length" in str(error.value)
    # Unset: lowered to half of what 96 tokens hold, and said so.
    with caplog.at_level("INFO"):
        floor = output_floor(config(), tokenizer, lines)
    assert floor == int(96 * per_token * 0.5) and floor < 500
    assert "not SynPro's 500" in caplog.text
    assert resolve_min_output_chars(None, 2048, per_token) == 500  # gpu profile: SynPro's
    assert resolve_min_output_chars(120, 96, per_token) == 120
    # Refused before any model loads when no tokenizer could reach it (8 characters/token).
    with pytest.raises(ValueError, match="min_output_chars=1000 cannot be reached"):
        config(min_output_chars=1000)


class _CountingScorer:
    """Stands in for θ/θ′ where only which samples are scored matters: influence is the
    output's length in thousands, minus the source's; a one-character text is unscorable."""

    def reward(self, outputs, sources, min_output_chars):
        return [
            0.0 if len(out) < min_output_chars else None if len(out) == 1 else len(out) / 1e3
            for out in outputs
        ]


def test_scored_share_is_logged_per_step_and_warns_under_half(tmp_path, caplog):
    from transformers import TrainerState

    from hf_megadocs.tuning.influence_reward import InfluenceReward, InfluenceShareCallback
    from hf_megadocs.tuning.metrics import MetricsFileCallback

    reward = InfluenceReward(_CountingScorer(), min_output_chars=10)
    callbacks = [InfluenceShareCallback(reward), MetricsFileCallback(tmp_path / "metrics.jsonl")]
    state = TrainerState()

    def log_step(step: int, outputs: list[str]) -> None:
        reward.reward(outputs, ["source"] * len(outputs))
        state.global_step = step
        logs = {"reward": 1.0, "loss": 0.1}
        for callback in callbacks:
            callback.on_log(None, state, None, logs=logs)

    long, short = "x" * 20, "too short"
    with caplog.at_level("WARNING"):
        log_step(1, [long, long, long, short])
    assert "only" not in caplog.text
    with caplog.at_level("WARNING"):
        log_step(2, [long, short, short, "x"])
    assert "step 2: only 1 of 4 samples (25%) got a real influence score" in caplog.text
    caplog.clear()
    reward.min_output_chars = 1
    with caplog.at_level("WARNING"):
        log_step(3, [long, "x"])  # "x" passes the floor but is unscorable: not a real score
    assert "step 3: only 1 of 2" not in caplog.text  # exactly half: no warning
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["influence/scored_share"] for line in lines] == [0.75, 0.25, 0.5]
    assert [line["influence/samples"] for line in lines] == [4, 4, 2]
    assert reward.totals["scored"] == 3 + 1 + 1 and reward.totals["samples"] == 10
