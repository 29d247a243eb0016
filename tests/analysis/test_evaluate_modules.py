"""The shipped `evaluate` modules load from their local folders offline and compute."""

from __future__ import annotations

import math

import pytest

evaluate = pytest.importorskip("evaluate")

from hf_megadocs.analysis.evaluate_modules import MODULES, module_path  # noqa: E402
from tests.analysis.rundirs import law_loss  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")


def test_megadocs_loss_is_token_weighted_and_bucketed():
    metric = evaluate.load(module_path("megadocs_loss"))
    out = metric.compute(token_losses=[[1.0, 3.0, 5.0], [2.0], []], position_bucket=2)
    assert out["loss"] == pytest.approx(11.0 / 4)  # not the mean of per-doc means (2.5)
    assert out["perplexity"] == pytest.approx(math.exp(11.0 / 4))
    assert (out["num_tokens"], out["num_documents"], out["empty_documents"]) == (4, 2, 1)
    # Positions start at 1: [1.0]→1, [3.0]→2, [5.0]→3, [2.0]→1; buckets of width 2.
    assert out["loss_by_position"] == {"0-2": pytest.approx(1.5), "2-4": pytest.approx(4.0)}


def test_megadocs_loss_add_batch_and_bad_input():
    metric = evaluate.load(module_path("megadocs_loss"))
    metric.add_batch(token_losses=[[1.0, 1.0]])
    metric.add_batch(token_losses=[[4.0]])
    assert metric.compute()["loss"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="position_bucket"):
        metric.compute(token_losses=[[1.0]], position_bucket=0)


def test_megadocs_loss_matches_trainer_evaluation():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    training_eval = pytest.importorskip("hf_megadocs.training.evaluation")
    from accelerate import Accelerator

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=64,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    windows = [list(range(1, 40)), list(range(5, 25)), [7, 8, 9]]
    trainer = training_eval.evaluate(
        Accelerator(cpu=True),
        model,
        training_eval.EvalSet(iid=windows, selection=windows[:1], long=windows),
        seq_len=48,
        batch_size=2,
        position_bucket=16,
    )
    per_doc = []
    with torch.no_grad():
        for window in windows:
            ids = torch.tensor([window])
            logits = model(input_ids=ids).logits[0, :-1]
            per_doc.append(
                torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none").tolist()
            )
    out = evaluate.load(module_path("megadocs_loss")).compute(
        token_losses=per_doc, position_bucket=16
    )
    assert out["loss"] == pytest.approx(trainer["iid_loss"], rel=1e-5)
    assert out["loss"] == pytest.approx(trainer["long_context_loss"], rel=1e-5)
    first = evaluate.load(module_path("megadocs_loss")).compute(token_losses=per_doc[:1])
    assert first["loss"] == pytest.approx(trainer["selection_loss"], rel=1e-5)
    for label, value in trainer["long_context_loss_by_position"].items():
        assert out["loss_by_position"][label] == pytest.approx(value, rel=1e-5)


def test_data_efficiency_module_matches_hand_computation():
    metric = evaluate.load(module_path("data_efficiency"))
    sizes = [1e6, 2e6, 4e6, 8e6, 16e6]
    losses = [law_loss(d) for d in sizes] + [law_loss(6e6), law_loss(8e6)]
    out = metric.compute(
        losses=losses, real_tokens=sizes + [4e6, 4e6], methods=["real"] * 5 + ["simple", "stitched"]
    )
    assert (out["alpha"], out["E"]) == (pytest.approx(0.3, rel=1e-5), pytest.approx(2.0, rel=1e-5))
    assert out["num_fit_points"] == 5
    assert out["data_efficiency"][-2:] == [
        pytest.approx(1.5, rel=1e-5),
        pytest.approx(2.0, rel=1e-5),
    ]
    low, high = out["data_efficiency_interval"][-1]
    assert low <= 2.0 + 1e-6 <= high + 2e-6


def test_data_efficiency_module_refuses_too_few_real_runs():
    metric = evaluate.load(module_path("data_efficiency"))
    with pytest.raises(ValueError, match="at least 4 distinct D"):
        metric.compute(
            losses=[4.0, 3.8, 3.7], real_tokens=[1e6, 2e6, 2e6], methods=["real", "real", "simple"]
        )


def test_module_path_rejects_unknown_names():
    assert set(MODULES) == {"megadocs_loss", "data_efficiency"}
    with pytest.raises(ValueError, match="shipped ones"):
        module_path("bleu")
