"""The chunked loss (hf_megadocs.training.chunked_loss) against the plain one: the same
per-token losses and gradients, and far less memory at the paper's context."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_megadocs.training.chunked_loss import (
    IGNORE_INDEX,
    linear_cross_entropy,
    output_projection,
)
from hf_megadocs.training.data.tokenize import ROLE_IDS
from hf_megadocs.training.losses import LossConfig, loss_metrics, token_losses


def _plain(hidden, weight, targets):
    import torch.nn.functional as F

    return F.cross_entropy(
        (hidden @ weight.T).float(), targets, ignore_index=IGNORE_INDEX, reduction="none"
    )


def _plain_sum(hidden, weight, targets):
    loss = _plain(hidden, weight, targets)
    return loss.sum(), loss


def _grads(fn, *tensors):
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors[:2]]
    total, per_token = fn(*leaves, *tensors[2:])
    (total / 7).backward()
    return per_token.detach(), leaves[0].grad, leaves[1].grad


@pytest.mark.parametrize("chunk_size", [1, 5, 16, 1000])
def test_values_and_gradients_match_the_plain_loss(chunk_size):
    torch.manual_seed(0)
    hidden, weight = torch.randn(61, 24), torch.randn(97, 24)
    targets = torch.randint(0, 97, (61,))
    targets[8:30] = IGNORE_INDEX  # more than one whole chunk masked
    targets[-1] = IGNORE_INDEX

    def chunked(h, w, t):
        return linear_cross_entropy(h, w, t, chunk_size=chunk_size)

    want, got = (
        _grads(_plain_sum, hidden, weight, targets),
        _grads(chunked, hidden, weight, targets),
    )
    for expected, actual in zip(want, got, strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
    assert got[0][targets == IGNORE_INDEX].abs().max() == 0
    assert got[1][targets == IGNORE_INDEX].abs().max() == 0


def test_all_targets_masked_give_zero_loss_and_gradient():
    hidden = torch.randn(9, 4, requires_grad=True)
    weight = torch.randn(11, 4, requires_grad=True)
    targets = torch.full((9,), IGNORE_INDEX)
    total, per_token = linear_cross_entropy(hidden, weight, targets, chunk_size=4)
    total.backward()
    assert total.item() == 0 and per_token.abs().sum() == 0
    assert hidden.grad.abs().sum() == 0 and weight.grad.abs().sum() == 0


def test_bf16_autocast_stays_close_to_the_plain_loss():
    torch.manual_seed(0)
    hidden, weight = torch.randn(40, 32), torch.randn(300, 32) * 0.2
    targets = torch.randint(0, 300, (40,))
    targets[:6] = IGNORE_INDEX

    def chunked(h, w, t):
        return linear_cross_entropy(h, w, t, chunk_size=7)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = _grads(_plain_sum, hidden, weight, targets)
        got = _grads(chunked, hidden, weight, targets)
    for expected, actual in zip(want, got, strict=True):
        assert actual.dtype == expected.dtype
        torch.testing.assert_close(actual, expected, rtol=2e-2, atol=2e-3)


def _llama(vocab=53):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config)


def _batch(vocab=53):
    torch.manual_seed(1)
    ids = torch.randint(0, vocab, (2, 12))
    labels = ids.clone()
    labels[0, 4] = labels[1, :3] = -100  # a block start; a prefix without a loss
    roles = torch.full((2, 12), ROLE_IDS["real"])
    roles[1, 5:] = ROLE_IDS["rephrase"]
    position_ids = torch.cat([torch.arange(5), torch.arange(7)]).expand(2, 12)
    return {"input_ids": ids, "labels": labels, "roles": roles, "stream": torch.tensor([0, 1]),
            "position_ids": position_ids}  # fmt: skip


def _step(model, config, wrap=False):
    model.zero_grad(set_to_none=True)
    runner = torch.nn.DataParallel(model) if wrap else model  # a real wrapper, CPU passthrough
    mean, sums = token_losses(runner, _batch(), config)
    mean.backward()
    return mean.detach(), sums, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("wrap", [False, True])
def test_a_llama_step_matches_the_plain_loss_for_every_stream_and_role(wrap):
    model = _llama()
    assert output_projection(model) is model.lm_head
    plain = _step(model, LossConfig(implementation="plain"))
    chunked = _step(model, LossConfig(chunk_size=5), wrap=wrap)
    torch.testing.assert_close(chunked[0], plain[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(chunked[1], plain[1], rtol=1e-6, atol=1e-6)
    metrics = loss_metrics(chunked[1])
    assert {"loss_real", "loss_synthetic", "loss_role/real", "loss_role/rephrase"} <= set(metrics)
    for name, grad in plain[2].items():
        torch.testing.assert_close(chunked[2][name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_other_model_families_fall_back_to_the_plain_loss(caplog):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=53, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    model = transformers.GPT2LMHeadModel(config)
    assert output_projection(model) is None
    plain = _step(model, LossConfig(implementation="plain"))
    chunked = _step(model, LossConfig())
    torch.testing.assert_close(chunked[1], plain[1])
    assert "using the plain loss" in caplog.text


def test_loss_config_rejects_bad_values():
    with pytest.raises(ValueError, match="loss.chunk_size"):
        LossConfig(chunk_size=0)
    with pytest.raises(ValueError, match="loss.implementation"):
        LossConfig(implementation="fused")  # type: ignore[arg-type]


_PEAK = textwrap.dedent(
    """
    import json, sys, torch
    from hf_megadocs.training.chunked_loss import linear_cross_entropy

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1])

    torch.manual_seed(0)
    seq, vocab, width = 4096, 49152, 16
    hidden = torch.randn(seq, width, requires_grad=True)
    weight = (torch.randn(vocab, width) * 0.02).requires_grad_(True)
    targets = torch.randint(0, vocab, (seq,))
    # Imports can leave a resident-size peak far above what is resident now, which would
    # hide the loss's own peak: reset the high-water mark (Linux >= 4.0) and count from here.
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    before = status("VmRSS:")
    if sys.argv[1] == "chunked":
        total, _ = linear_cross_entropy(hidden, weight, targets, chunk_size=1024)
        (total / seq).backward()
    else:
        torch.nn.functional.cross_entropy(hidden @ weight.T, targets).backward()
    print(json.dumps(status("VmHWM:") - before))
    """
)


def test_chunked_peak_memory_is_far_below_the_plain_loss_at_seq_4096():
    """Forward + backward of the output layer and loss of one 4,096-token sequence at a 49k
    vocabulary, each in a fresh process: growth of the peak resident size over the inputs."""
    extra = {}
    for implementation in ("chunked", "plain"):
        out = subprocess.run(
            [sys.executable, "-c", _PEAK, implementation], capture_output=True, text=True, check=True
        )
        extra[implementation] = json.loads(out.stdout.splitlines()[-1]) / 2**20  # KiB -> GiB
    logits_gib = 4096 * 49152 * 4 / 2**30  # 0.75 GiB
    assert extra["plain"] > 1.5 * logits_gib, extra  # the logits and their softmax/gradient
    assert extra["chunked"] < 0.5 * logits_gib, extra  # at most two 1,024-token chunk buffers
