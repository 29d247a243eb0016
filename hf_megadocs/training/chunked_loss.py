"""Cross-entropy of a linear output layer, computed over chunks of tokens: the full logits
never exist.

The loss of a token is ``logsumexp(h Wᵀ) - (h Wᵀ)[target]``. Done at once, the
``[tokens, vocab]`` logits of one 4,096-token sequence take 0.8 GB in fp32 at a 49k
vocabulary (2 GB at 128k), and autograd keeps them, their softmax and their gradient alive
together. Here the projection and the loss run ``chunk_size`` tokens at a time, and each
chunk's gradients (of the hidden states and of the weight) are computed in the same pass:
the differentiable output is the *sum* of the losses, so backward only scales the stored
gradients by one number and at most one chunk of logits is alive at any time. Positions
whose target is :data:`IGNORE_INDEX` are skipped (loss 0, gradient 0).

On CUDA, with ``liger_kernel`` installed, its fused Triton kernel
(``liger_fused_linear_cross_entropy``) does the same job; it is optional.
:func:`output_projection` and :func:`final_hidden_states` take from a causal LM what the
loss needs instead of its logits.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

IGNORE_INDEX = -100
"""Target id of positions without a loss (masked labels, padding, a sequence's last token)."""


def _matmul_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The dtype the output layer's matmul runs in: autocast's when it is on (as a plain
    ``nn.Linear`` would under ``accelerator.autocast``), else the hidden states'."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return hidden.dtype


def _chunk(
    h: torch.Tensor, w: torch.Tensor, target: torch.Tensor, with_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Losses of one chunk and the gradient of their sum w.r.t. its logits (in ``h``'s
    dtype), from one ``[chunk, vocab]`` fp32 buffer reused in place."""
    logits = (h @ w.T).float()
    picked = logits.gather(1, target[:, None]).squeeze(1)
    top = logits.amax(1, keepdim=True)
    probs = logits.sub_(top).exp_()  # softmax in place: exp(x - max) / sum
    total = probs.sum(1, keepdim=True)
    losses = (top + total.log()).squeeze(1) - picked
    if not with_grad:
        return losses, None
    grad = probs.div_(total)
    grad[torch.arange(target.numel(), device=grad.device), target] -= 1
    return losses, grad.to(h.dtype)


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """``(sum of losses, per-token losses)`` of ``hidden @ weight.T`` against ``targets``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        chunk_size: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = _matmul_dtype(hidden)
        wants_hidden, wants_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        losses = torch.zeros(hidden.size(0), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.zeros_like(hidden) if wants_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if wants_weight else None
        keep = (targets != IGNORE_INDEX).nonzero().squeeze(1)
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            for start in range(0, keep.numel(), chunk_size):
                rows = keep[start : start + chunk_size]
                h = hidden[rows].to(dtype)
                losses[rows], grad = _chunk(h, w, targets[rows], wants_hidden or wants_weight)
                if grad_hidden is not None:
                    grad_hidden[rows] = (grad @ w).to(hidden.dtype)
                if grad_weight is not None and dtype == torch.float32:
                    grad_weight.addmm_(grad.T, h)
                elif grad_weight is not None:
                    grad_weight += grad.T @ h  # bf16 product, as a plain linear's backward
                del grad  # before the next chunk's logits exist
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(losses)
        return losses.sum(), losses

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_total: torch.Tensor, _grad_losses: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_total.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = (grad_weight * grad_total).to(ctx.weight_dtype)
        return grad_hidden, grad_weight, None, None


def liger_available(device: torch.device) -> bool:
    """Whether Liger's fused linear cross-entropy can run on ``device`` (CUDA + package)."""
    return device.type == "cuda" and importlib.util.find_spec("liger_kernel") is not None


def _liger_linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    out = liger_fused_linear_cross_entropy(
        hidden, weight, targets, ignore_index=IGNORE_INDEX, reduction="none"
    )
    per_token = out[0] if isinstance(out, tuple) else out  # some versions add extras
    # The gradient flows through the sum only, so every token's upstream gradient is the
    # same number: Liger's backward is exact then in every version (older ones scale all
    # tokens by the first token's upstream gradient).
    return per_token.sum(), per_token.detach().float()


CHUNKED_LOSS_MODEL_TYPES: tuple[str, ...] = ("llama",)
"""``config.model_type`` of the families whose logits are exactly ``lm_head(last_hidden_state
of base_model)``: no bias, soft-capping or logit scaling. Others use the plain loss."""


def output_projection(model: torch.nn.Module) -> torch.nn.Linear | None:
    """The output layer (``lm_head``) of ``model`` (wrapped or not) when the chunked loss
    reproduces its logits exactly; None for other models."""
    from accelerate.utils import extract_model_from_parallel

    inner = extract_model_from_parallel(model)
    model_type = getattr(getattr(inner, "config", None), "model_type", None)
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if model_type not in CHUNKED_LOSS_MODEL_TYPES or not isinstance(head, torch.nn.Linear):
        return None
    return head if head.bias is None else None


def final_hidden_states(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    *,
    position_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[batch, seq, hidden]`` states the output layer reads (after the final norm), without
    computing the ``[batch, seq, vocab]`` logits."""
    from accelerate.utils import extract_model_from_parallel

    inputs = {"input_ids": input_ids, "position_ids": position_ids}
    inputs["attention_mask"] = attention_mask
    inner = extract_model_from_parallel(model)
    if inner is model:
        return inner.base_model(**inputs).last_hidden_state
    # A DDP or compiled wrapper must run its own forward (DDP prepares the gradient
    # all-reduce there): ask it for the hidden states and a single position's logits.
    return model(**inputs, logits_to_keep=1, output_hidden_states=True).hidden_states[-1]


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk_size: int,
    fused_kernel: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``hidden @ weight.T`` against ``targets``, in chunks of tokens.

    Args:
        hidden: ``[tokens, hidden]`` final hidden states (after the last norm).
        weight: ``[vocab, hidden]`` output projection (bias-free).
        targets: ``[tokens]`` target ids; :data:`IGNORE_INDEX` positions get loss 0.
        chunk_size: tokens per chunk; the peak extra memory is one ``[chunk, vocab]`` fp32
            buffer (plus its low-precision copy under bf16 autocast).
        fused_kernel: use Liger's fused kernel when :func:`liger_available`.

    Returns:
        The sum of the per-token losses (differentiable w.r.t. ``hidden`` and ``weight``)
        and the ``[tokens]`` fp32 per-token losses (detached, for metrics).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be an integer >= 1.")
    if hidden.dim() != 2 or targets.shape != hidden.shape[:1] or weight.dim() != 2:
        raise ValueError(
            f"expected hidden [tokens, hidden], weight [vocab, hidden] and targets [tokens]; "
            f"got {tuple(hidden.shape)}, {tuple(weight.shape)} and {tuple(targets.shape)}."
        )
    if fused_kernel and liger_available(hidden.device):
        return _liger_linear_cross_entropy(hidden, weight, targets)
    total, per_token = _ChunkedLinearCrossEntropy.apply(hidden, weight, targets, chunk_size)
    return total, per_token


__all__ = [
    "CHUNKED_LOSS_MODEL_TYPES",
    "IGNORE_INDEX",
    "final_hidden_states",
    "liger_available",
    "linear_cross_entropy",
    "output_projection",
]
