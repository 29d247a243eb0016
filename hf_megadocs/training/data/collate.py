"""Turn a mixing sampler's ``(stream, index)`` pairs into a batch of torch tensors."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import torch

from hf_megadocs.training.data.mixing import REAL, SYNTHETIC
from hf_megadocs.training.data.packing import IGNORE_INDEX, PackedSequences
from hf_megadocs.training.data.tokenize import ROLE_IDS


class MixedBatchCollator:
    """Collate ``[(stream, index), ...]`` from two packed corpora into model inputs.

    Returns ``input_ids``, ``labels`` (int64; -100 at block starts in blocked attention
    modes, at padding and at masked roles), ``position_ids`` (int64, only when the
    attention mode is not ``cross_document``: transformers then builds the block-diagonal
    mask itself, so pass no ``attention_mask``), ``roles`` (int64, -1 = padding) and
    ``stream`` ([b] int64, 0 real / 1 synthetic). Rows keep the order of the pairs.
    Pop ``roles`` and ``stream`` before ``model(**batch)``; in ``megadoc``/``document``
    mode call :func:`configure_model_for_packing` first (transformers ignores the blocks
    while ``config.use_cache`` is True).
    """

    def __init__(
        self,
        real: PackedSequences,
        synthetic: PackedSequences | None = None,
        *,
        masked_roles: Collection[str] = (),
    ) -> None:
        """
        Args:
            real: packed real sequences (stream 0).
            synthetic: packed synthetic sequences (stream 1), or None for real-only runs.
            masked_roles: role names whose tokens get label -100 (e.g. ``{"rationale"}``
                to train on latent-thought megadocs without predicting the rationales).
        """
        if synthetic is not None:
            if synthetic.seq_len != real.seq_len:
                raise ValueError(
                    f"real and synthetic sequences differ in length ({real.seq_len} vs "
                    f"{synthetic.seq_len}); pack both with the same PackConfig.seq_len."
                )
            if synthetic.attention != real.attention:
                raise ValueError(
                    f"real and synthetic sequences were packed for different attention modes "
                    f"({real.attention!r} vs {synthetic.attention!r}); use one PackConfig."
                )
        unknown = set(masked_roles) - set(ROLE_IDS)
        if unknown:
            raise ValueError(
                f"masked_roles has unknown roles {sorted(unknown)}; allowed: {sorted(ROLE_IDS)}."
            )
        self.sources = {REAL: real, SYNTHETIC: synthetic}
        self.attention = real.attention
        self.masked_role_ids = np.array(sorted(ROLE_IDS[r] for r in masked_roles), dtype=np.int8)

    def __call__(self, pairs: Sequence[tuple[int, int]]) -> dict[str, torch.Tensor]:
        if len(pairs) == 0:
            raise ValueError("MixedBatchCollator got an empty list of (stream, index) pairs.")
        arr = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        streams, index = arr[:, 0], arr[:, 1]
        bad = (streams != REAL) & (streams != SYNTHETIC)
        if bad.any():
            raise ValueError(
                f"stream ids must be 0 or 1, got {sorted(set(streams[bad].tolist()))}."
            )
        is_syn = streams == SYNTHETIC
        if self.sources[SYNTHETIC] is None and is_syn.any():
            raise ValueError(
                "got synthetic (stream 1) pairs but the collator has no synthetic corpus; "
                "pass synthetic=PackedSequences or use synthetic_share=0."
            )
        keys = ["input_ids", "labels", "roles"]
        if self.attention != "cross_document":
            keys.append("position_ids")
        if is_syn.all() or not is_syn.any():  # one stream: no scatter needed
            part = self.sources[int(streams[0])].batch(index)
            out = {k: part[k] for k in keys}
        else:
            L = self.sources[REAL].seq_len
            out = {k: np.empty((len(arr), L), dtype=np.int64) for k in keys}
            for stream in (REAL, SYNTHETIC):
                rows = np.flatnonzero(streams == stream)
                if len(rows):
                    part = self.sources[stream].batch(index[rows])
                    for k in keys:
                        out[k][rows] = part[k]
        if len(self.masked_role_ids):
            out["labels"][np.isin(out["roles"], self.masked_role_ids)] = IGNORE_INDEX
        batch = {k: torch.from_numpy(np.ascontiguousarray(v)).long() for k, v in out.items()}
        batch["stream"] = torch.from_numpy(streams.copy())
        return batch


_BLOCK_AWARE_ATTENTION = (
    "sdpa",
    "eager",
    "flex_attention",
    "flash_attention_2",
    "flash_attention_3",
)


def configure_model_for_packing(model: torch.nn.Module, attention: str) -> None:
    """Make a transformers causal LM honour the attention blocks encoded in ``position_ids``.

    transformers only derives the block-diagonal mask from ``position_ids`` when no KV
    cache is passed, and ``config.use_cache=True`` (the default of most configs) makes the
    model build one even in training, silently falling back to one causal block per row.
    This sets ``config.use_cache = False`` and checks the attention implementation.
    Call it once before training in ``megadoc`` or ``document`` mode (harmless otherwise).
    """
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError(f"{type(model).__name__} has no .config; pass a transformers model.")
    config.use_cache = False
    if attention == "cross_document":
        return
    impl = getattr(config, "_attn_implementation", None)
    if impl not in _BLOCK_AWARE_ATTENTION:
        raise ValueError(
            f"attention={attention!r} needs an attention implementation that reads packed "
            f"position_ids; the model uses {impl!r}. Load it with attn_implementation='sdpa' "
            f"(or one of {list(_BLOCK_AWARE_ATTENTION)}), or use attention='cross_document'."
        )
