"""Tests for hf_megadocs.training.optim: LR schedule, weight-decay groups, MFU."""

from __future__ import annotations

import math

import pytest
import torch

from hf_megadocs.analysis.compute import mfu
from hf_megadocs.training.config import OptimConfig
from hf_megadocs.training.optim import (
    build_optimizer,
    build_scheduler,
    is_no_decay,
    lr_at,
    param_groups,
    warmup_steps,
)


def test_warmup_steps_rounds_up_and_is_at_least_one():
    assert warmup_steps(1000, 0.01) == 10
    assert warmup_steps(50, 0.01) == 1
    assert warmup_steps(101, 0.01) == 2
    assert warmup_steps(100, 0.0) == 0


def test_lr_schedule_warmup_peak_cosine_and_floor():
    lr, total, warmup = 1e-3, 110, 10
    values = [lr_at(s, lr=lr, total_steps=total, warmup=warmup) for s in range(total + 5)]
    assert values[0] == pytest.approx(lr / warmup)
    assert values[warmup - 1] == pytest.approx(lr)
    assert values[warmup] == pytest.approx(lr)  # cosine starts at the peak
    # Halfway through the decay the cosine is at half the peak.
    assert values[warmup + 50] == pytest.approx(lr / 2)
    decay = values[warmup:total]
    assert all(a > b for a, b in zip(decay, decay[1:]))
    assert values[total - 1] > 0
    assert values[total:] == [0.0] * 5


def test_lr_schedule_min_lr_and_no_warmup():
    kw = dict(lr=1.0, total_steps=20, warmup=0, min_lr=0.1)
    assert lr_at(0, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(0.55)
    assert lr_at(20, **kw) == pytest.approx(0.1)


def test_scheduler_follows_lr_at_step_by_step():
    config = OptimConfig(lr=2e-3, warmup_fraction=0.1, min_lr=1e-4)
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([param], lr=config.lr)
    sched = build_scheduler(opt, config, total_steps=30)
    warmup = warmup_steps(30, 0.1)
    for step in range(30):
        expected = lr_at(step, lr=2e-3, total_steps=30, warmup=warmup, min_lr=1e-4)
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12)
        opt.step()
        sched.step()


def test_constant_schedule_warms_up_then_holds_the_peak():
    config = OptimConfig(lr=1e-3, warmup_fraction=0.1, schedule="constant")
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([param], lr=config.lr)
    sched = build_scheduler(opt, config, total_steps=30)
    rates = []
    for _ in range(30):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[:3] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3])
    assert rates[3:] == pytest.approx([1e-3] * 27)
    with pytest.raises(ValueError, match="optim.schedule"):
        OptimConfig(schedule="linear")


@pytest.mark.parametrize(
    ("name", "excluded"),
    [
        ("model.embed_tokens.weight", True),
        ("transformer.wte.weight", True),
        ("model.layers.0.input_layernorm.weight", True),
        ("model.norm.weight", True),
        ("model.layers.0.self_attn.q_proj.bias", True),
        ("model.layers.0.self_attn.q_proj.weight", False),
        ("model.layers.3.mlp.down_proj.weight", False),
        ("lm_head.weight", False),
    ],
)
def test_is_no_decay_by_name(name, excluded):
    assert is_no_decay(name) is excluded


def _tiny_llama(**overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=100,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        tie_word_embeddings=False,
        **overrides,
    )
    return LlamaForCausalLM(config)


def test_param_groups_on_a_real_llama():
    model = _tiny_llama(attention_bias=True)
    decay, no_decay = param_groups(model, weight_decay=0.4)
    assert decay["weight_decay"] == 0.4 and no_decay["weight_decay"] == 0.0
    assert "model.embed_tokens.weight" in no_decay["names"]
    assert "model.norm.weight" in no_decay["names"]
    assert "model.layers.1.post_attention_layernorm.weight" in no_decay["names"]
    assert "model.layers.0.self_attn.k_proj.bias" in no_decay["names"]
    assert "lm_head.weight" in decay["names"]
    assert "model.layers.0.mlp.gate_proj.weight" in decay["names"]
    # Every trainable parameter lands in exactly one group.
    all_names = {n for n, _ in model.named_parameters()}
    assert set(decay["names"]) | set(no_decay["names"]) == all_names
    assert not set(decay["names"]) & set(no_decay["names"])


def test_adamw_decay_skips_embeddings():
    """With zero gradients only decoupled weight decay moves the weights."""
    model = _tiny_llama()
    opt = build_optimizer(model, OptimConfig(lr=0.1, weight_decay=0.5, warmup_fraction=0.0))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = dict(model.named_parameters())
    assert torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    assert torch.equal(after["model.norm.weight"], before["model.norm.weight"])
    shrunk = after["lm_head.weight"].detach()
    assert torch.allclose(shrunk, before["lm_head.weight"] * (1 - 0.1 * 0.5))


def test_mfu_formula():
    # 300M params at 100k tok/s on a 989 TFLOP/s (bf16 dense H100) device.
    value = mfu(300_000_000, 100_000, 989e12)
    assert value == pytest.approx(6 * 3e8 * 1e5 / 989e12)
    assert 0 < value < 1
    assert math.isclose(mfu(1, 1, 6), 1.0)
