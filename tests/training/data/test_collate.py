"""MixedBatchCollator: tensors, dtypes, streams, role masking; model-ready batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset

from hf_megadocs.training.data.collate import MixedBatchCollator, configure_model_for_packing
from hf_megadocs.training.data.mixing import MixConfig, MixingSampler
from hf_megadocs.training.data.packing import IGNORE_INDEX, PackConfig, pack
from hf_megadocs.training.data.tokenize import ROLE_IDS


def units(offset: int, n_units: int, role: str, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    rows = {"input_ids": [], "roles": [], "doc_starts": []}
    nxt = offset
    for _ in range(n_units):
        lens = rng.integers(3, 30, size=rng.integers(1, 4))
        n = int(lens.sum())
        rows["input_ids"].append(list(range(nxt, nxt + n)))
        nxt += n
        rows["roles"].append([ROLE_IDS[role]] * (n - 1) + [ROLE_IDS["real"]])
        rows["doc_starts"].append((np.cumsum(lens) - lens).tolist())
    return Dataset.from_dict(rows)


@pytest.fixture(scope="module")
def streams():
    real_units, syn_units = units(1, 30, "real", 0), units(5_000, 40, "rephrase", 1)
    out = {}
    for mode in ("cross_document", "document"):
        cfg = PackConfig(seq_len=32, attention=mode)
        out[mode] = (pack(real_units, cfg), pack(syn_units, cfg))
    return out


@pytest.mark.parametrize("mode", ["cross_document", "document"])
def test_batch_tensors_follow_the_pairs(streams, mode):
    real, syn = streams[mode]
    pairs = [(1, 3), (0, 0), (1, 0), (0, len(real) - 1)]
    batch = MixedBatchCollator(real, syn)(pairs)
    expected_keys = {"input_ids", "labels", "roles", "stream"}
    if mode != "cross_document":
        expected_keys.add("position_ids")
    assert set(batch) == expected_keys
    for key, value in batch.items():
        assert value.dtype == torch.int64 and value.is_contiguous(), key
    assert batch["stream"].tolist() == [1, 0, 1, 0]
    for row, (stream, index) in enumerate(pairs):
        src = (real, syn)[stream][index]
        for key in ("input_ids", "labels", "roles") + (
            ("position_ids",) if mode != "cross_document" else ()
        ):
            assert batch[key][row].tolist() == src[key].tolist(), key
    assert (batch["input_ids"][batch["stream"] == 1] >= 5_000).all()


def test_masked_roles_get_ignored_labels(streams):
    real, syn = streams["cross_document"]
    batch = MixedBatchCollator(real, syn, masked_roles={"rephrase"})([(1, 0), (0, 0)])
    rephrase = batch["roles"] == ROLE_IDS["rephrase"]
    assert rephrase[0].any() and not rephrase[1].any()
    assert (batch["labels"][rephrase] == IGNORE_INDEX).all()
    assert (batch["labels"][~rephrase] == batch["input_ids"][~rephrase]).all()


def test_collator_errors(streams):
    real, syn = streams["cross_document"]
    with pytest.raises(ValueError, match="no synthetic corpus"):
        MixedBatchCollator(real)([(1, 0)])
    with pytest.raises(ValueError, match="attention modes"):
        MixedBatchCollator(real, streams["document"][1])
    other = pack(units(1, 30, "real", 0), PackConfig(seq_len=16))
    with pytest.raises(ValueError, match="length"):
        MixedBatchCollator(real, other)
    with pytest.raises(ValueError, match="unknown roles"):
        MixedBatchCollator(real, syn, masked_roles={"poem"})
    with pytest.raises(ValueError, match="stream ids"):
        MixedBatchCollator(real, syn)([(2, 0)])


def test_sampler_and_collator_feed_a_causal_lm(streams):
    """End to end: the sampler's pairs become a batch that a Llama trains on in document mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    real, syn = streams["document"]
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=10_000,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=64,
            attn_implementation="sdpa",
        )
    )
    assert model.config.use_cache
    configure_model_for_packing(model, "document")
    assert model.config.use_cache is False
    sampler = MixingSampler(
        len(real), len(syn), MixConfig(synthetic_share=0.5, global_batch_size=4)
    )
    collate = MixedBatchCollator(real, syn)
    batch = collate(next(iter(sampler)))
    assert int(batch["stream"].sum()) == 2
    inputs = {k: batch[k] for k in ("input_ids", "labels", "position_ids")}
    loss = model(**inputs).loss
    loss.backward()
    # The block mask is in effect: the first block's logits don't change if later blocks do.
    with torch.no_grad():
        row = inputs["input_ids"][:1].clone()
        pos = inputs["position_ids"][:1]
        starts = torch.nonzero(pos[0] == 0).flatten()
        assert len(starts) > 1, "the fixture should put several documents in a row"
        second = int(starts[1])
        a = model(input_ids=row, position_ids=pos).logits[0, second:]
        row[0, :second] = 5
        b = model(input_ids=row, position_ids=pos).logits[0, second:]
        assert torch.allclose(a, b, atol=1e-5)
    model.config._attn_implementation = "not_a_kernel"
    with pytest.raises(ValueError, match="attn_implementation"):
        configure_model_for_packing(model, "document")


def test_roles_survive_tokenize_pack_collate():
    """Builder-style megadoc rows → tokens → packed rows → batch: every token keeps its role."""
    from hf_megadocs.training.data.tokenize import tokenize_corpus
    from tests.training.data.test_tokenize import build_tokenizer, lee_lines, stitched_row

    tok = build_tokenizer()
    lines = lee_lines()
    rows = [
        stitched_row(
            [("rephrase", lines[i][:80]), ("qa", lines[i + 1][:60]), ("real", lines[i][:200])]
        )
        for i in range(0, 40, 2)
    ]
    tokenized = tokenize_corpus(Dataset.from_list(rows), tok)
    packed = pack(tokenized, PackConfig(seq_len=64, attention="document", drop_last=False))
    n = len(packed)
    batch = MixedBatchCollator(packed, masked_roles={"qa"})([(0, i) for i in range(n)])
    roles, labels = batch["roles"], batch["labels"]
    counts = {r: int((roles == ROLE_IDS[r]).sum()) for r in ("rephrase", "qa", "real")}
    expected = {r: sum(x.count(ROLE_IDS[r]) for x in tokenized["roles"]) for r in counts}
    assert counts == expected
    assert (labels[roles == ROLE_IDS["qa"]] == IGNORE_INDEX).all()
    # Three documents per unit, so three EOS per unit, all inside the batch.
    assert int((batch["input_ids"][roles >= 0] == tok.eos_token_id).sum()) == 3 * len(rows)
