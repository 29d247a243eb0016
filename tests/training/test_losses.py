"""Per-token loss sums by stream and role (hf_megadocs.training.losses)."""

from __future__ import annotations

import pytest


def test_token_losses_aggregate_by_stream_and_role():
    import torch
    import torch.nn.functional as F

    from hf_megadocs.training.data.tokenize import ROLE_IDS
    from hf_megadocs.training.losses import group_sums, loss_metrics, tokens_seen

    torch.manual_seed(0)
    vocab, length = 11, 6
    logits = torch.randn(2, length, vocab)
    ids = torch.randint(0, vocab, (2, length))
    labels = ids.clone()
    labels[1, 3] = -100  # a block start in a blocked attention mode
    roles = torch.full((2, length), ROLE_IDS["real"])
    roles[1, :4] = ROLE_IDS["rephrase"]
    batch = {"labels": labels, "roles": roles, "stream": torch.tensor([0, 1])}
    per_token = F.cross_entropy(
        logits[:, :-1].reshape(-1, vocab), ids[:, 1:].reshape(-1), reduction="none"
    )
    per_token = per_token.view(2, length - 1)
    valid = labels[:, 1:] != -100
    # Next-token losses as the trainer gives them: 0 where the next label is masked and at
    # the last position.
    losses = F.pad(per_token * valid, (0, 1), value=0.0)
    stats = group_sums(losses, batch)
    metrics = loss_metrics(stats)
    assert metrics["loss"] == pytest.approx(per_token[valid].mean().item(), rel=1e-6)
    assert metrics["loss_real"] == pytest.approx(per_token[0].mean().item(), rel=1e-6)
    assert metrics["loss_synthetic"] == pytest.approx(
        per_token[1][valid[1]].mean().item(), rel=1e-6
    )
    # Roles of the *predicted* tokens: row 1 targets 1..3 are rephrase, 3 is masked.
    rephrase = per_token[1, :2]
    real = torch.cat([per_token[0], per_token[1, 3:]])
    assert metrics["loss_role/rephrase"] == pytest.approx(rephrase.mean().item(), rel=1e-6)
    assert metrics["loss_role/real"] == pytest.approx(real.mean().item(), rel=1e-6)
    assert "loss_role/rationale" not in metrics  # no tokens, no key
    counts = stats.view(-1, 2)[:, 1]
    assert counts[0].item() == valid.sum().item() == 9
    padded = dict(batch, roles=batch["roles"].clone())
    padded["roles"][1, 4:] = -1  # padding is not a token seen
    assert tokens_seen(padded).tolist() == [10.0, 6.0, 4.0]
