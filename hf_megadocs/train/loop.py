"""The training loop, read top to bottom (nanoGPT's order on Accelerate).

accelerator → seed → tokenizer/model checks → data (tokenized main process first) →
optimizer groups → schedule → ``prepare`` → register the sampler → resume → print the
derived numbers → loop (forward under ``accumulate``, backward, clip, step, schedule,
zero, log, eval when due, save when due) → final eval, summary, ``end_training``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_megadocs.collate import configure_model_for_packing
from hf_megadocs.train.checkpoint import (
    append_jsonl,
    check_resumable,
    resolve_checkpoint,
    save_checkpoint,
    truncate_metrics,
)
from hf_megadocs.train.config import ModelConfig, TrainConfig
from hf_megadocs.train.optim import build_optimizer, build_scheduler, lr_at, warmup_steps

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

STREAM_NAMES: tuple[str, ...] = ("real", "synthetic")
"""Stream ids as the collator's ``stream`` tensor holds them: 0 = real, 1 = synthetic."""


# ---------------------------------------------------------------- model and tokenizer


def load_tokenizer(config: ModelConfig) -> Any:
    """The tokenizer (default: the embedded generator's); it must have an EOS token."""
    from transformers import AutoTokenizer

    path = config.tokenizer or config.pretrained
    if path is None:
        from hf_megadocs.embedded import embedded_generator_path

        path = embedded_generator_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.eos_token_id is None:
        raise ValueError(
            f"model.tokenizer={path!r} has no EOS token; packing puts an EOS after every "
            "document. Use a tokenizer with an eos_token or set one on it and save it."
        )
    return tokenizer


def build_model(config: ModelConfig, tokenizer: Any, seq_len: int) -> torch.nn.Module:
    """A fresh Llama from the architecture fields, or the pretrained LM; checked against data."""
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

    if config.pretrained is not None:
        model_config = AutoConfig.from_pretrained(config.pretrained)
    else:
        model_config = LlamaConfig(
            vocab_size=config.vocab_size or len(tokenizer),
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            num_key_value_heads=config.num_key_value_heads or config.num_attention_heads,
            max_position_embeddings=config.max_position_embeddings,
            rope_theta=config.rope_theta,
            tie_word_embeddings=config.tie_word_embeddings,
            initializer_range=config.initializer_range,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    max_pos = getattr(model_config, "max_position_embeddings", None)
    if max_pos is not None and seq_len > max_pos:
        raise ValueError(
            f"data.seq_len={seq_len} is longer than the model allows (max_position_embeddings="
            f"{max_pos}); shorten data.seq_len or use a model with a longer context."
        )
    if len(tokenizer) > model_config.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
            f"{model_config.vocab_size}; ids past the embedding would crash. Use the model's own "
            "tokenizer, or set model.vocab_size >= len(tokenizer) (null sizes it to the tokenizer)."
        )
    if config.pretrained is not None:
        return AutoModelForCausalLM.from_pretrained(
            config.pretrained, attn_implementation=config.attn_implementation
        )
    return AutoModelForCausalLM.from_config(
        model_config, attn_implementation=config.attn_implementation
    )


# ---------------------------------------------------------------- loss and stats


def token_losses(
    logits: torch.Tensor, batch: dict[str, torch.Tensor], n_roles: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss of the micro-batch (for backward) and its sums by stream and role.

    The per-token loss is computed once (``reduction="none"``); the returned stats vector
    holds ``[sum, count]`` for all tokens, then each stream, then each role, so it can be
    summed over micro-batches and processes before dividing.
    """
    import torch
    import torch.nn.functional as F

    # Shift the labels, not the logits: a view of the full logits avoids copying them, and
    # cross_entropy over [N, V] rows is far faster on CPU than over a transposed [B, V, T].
    labels = F.pad(batch["labels"], (0, 1), value=-100)[:, 1:]
    valid = labels != -100
    loss = F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)),
        labels.reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view_as(labels)
    count = valid.sum()
    mean = loss.sum() / count.clamp(min=1)
    with torch.no_grad():
        detached = loss.detach()
        stream = batch["stream"].view(-1, 1).expand_as(labels)
        roles = F.pad(batch["roles"], (0, 1), value=-1)[:, 1:]
        groups = [valid] + [valid & (stream == s) for s in range(len(STREAM_NAMES))]
        groups += [valid & (roles == r) for r in range(n_roles)]
        mask = torch.stack(groups).to(detached.dtype)
        sums = (mask * detached).flatten(1).sum(1)
        counts = mask.flatten(1).sum(1)
        stats = torch.stack([sums, counts], dim=1).flatten().double()
    return mean, stats


def tokens_seen(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Input tokens (padding excluded) of the micro-batch: ``[all, real, synthetic]``."""
    import torch

    per_row = (batch["roles"] >= 0).sum(1).double()  # role -1 marks padding
    by_stream = [per_row[batch["stream"] == s].sum() for s in range(len(STREAM_NAMES))]
    return torch.stack([per_row.sum(), *by_stream])


def stats_to_metrics(stats: torch.Tensor, role_names: tuple[str, ...]) -> dict[str, float]:
    """``loss``, ``loss_real``, ``loss_synthetic``, ``loss_role/<name>`` from summed stats."""
    pairs = stats.view(-1, 2).tolist()
    names = ["loss"] + [f"loss_{s}" for s in STREAM_NAMES] + [f"loss_role/{r}" for r in role_names]
    return {name: s / c for name, (s, c) in zip(names, pairs) if c > 0}


# ---------------------------------------------------------------- helpers


def _flat_hparams(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat_hparams(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def mfu(num_params: int, tokens_per_s: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: ``6 · N · tokens/s / peak_flops`` (attention FLOPs ignored)."""
    return 6.0 * num_params * tokens_per_s / peak_flops


# ---------------------------------------------------------------- the loop


def _cpu_processes() -> bool:
    """Whether this is a multi-process launch on a machine without CUDA (use gloo on CPU).

    Accelerate picks its CPU backend for torchrun-style launches (``accelerate launch
    --multi_gpu``, ``torchrun``) only when told to use the CPU; we tell it when there is no
    GPU. ``accelerate launch --cpu --num_processes N`` starts N processes only through MPI
    (``--mpirun_hostfile``); without it one process runs, which we say loudly.
    """
    import torch

    world = int(os.environ.get("WORLD_SIZE") or os.environ.get("PMI_SIZE") or 1)
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes")
    if use_cpu and world == 1 and "MASTER_ADDR" in os.environ:
        logger.warning(
            "accelerate launch --cpu --num_processes N>1 without --mpirun_hostfile starts ONE "
            "process (accelerate's CPU multi-process launch needs MPI); training continues on one "
            "process with more gradient accumulation (same results). For N CPU processes use: "
            "accelerate launch --multi_gpu --num_processes N recipes/train.py ... (gloo is used "
            "when there is no GPU) or torchrun --nproc_per_node N recipes/train.py ..."
        )
    return world > 1 and not torch.cuda.is_available()


def train(config: TrainConfig) -> dict[str, Any]:
    """Train as ``config`` says; returns the summary also written to ``summary.json``."""
    import torch
    from accelerate import Accelerator, PartialState
    from accelerate.utils import ProjectConfiguration, set_seed
    from tqdm.auto import tqdm

    from hf_megadocs.tokenize import ROLE_NAMES
    from hf_megadocs.train.data import StepBatches, build_train_data
    from hf_megadocs.train.evaluation import evaluate

    output_dir = Path(config.output_dir)
    cpu = _cpu_processes()
    world_size = PartialState(cpu=cpu).num_processes
    accumulation = config.gradient_accumulation_steps(world_size)
    log_with = None if config.log_with == "none" else config.log_with
    if log_with == "wandb":
        try:
            import wandb  # noqa: F401
        except ImportError as err:
            raise ImportError("log_with='wandb' needs wandb: pip install wandb") from err
    accelerator = Accelerator(
        gradient_accumulation_steps=accumulation,
        mixed_precision=config.mixed_precision,
        log_with=log_with,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / "logs")
        ),
        step_scheduler_with_optimizer=False,  # we step it once per optimizer step ourselves
        dynamo_backend="inductor" if config.compile else None,
        cpu=cpu,
    )
    set_seed(config.seed)

    tokenizer = load_tokenizer(config.model)
    model = build_model(config.model, tokenizer, config.data.seq_len)
    # Without this, a KV cache built in training hides the attention blocks of
    # megadoc/document mode (transformers then falls back to one causal block per row).
    configure_model_for_packing(model, config.data.attention)
    data = build_train_data(config, tokenizer, accelerator)
    num_params = sum(p.numel() for p in model.parameters())
    total_steps = len(data.sampler)
    if total_steps < 1:
        raise ValueError("the mixing sampler plans 0 steps; add data or raise mix.real_epochs.")
    planned = min(total_steps, config.max_steps or total_steps)
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_scheduler(optimizer, config.optim, total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    accelerator.register_for_checkpointing(data.sampler)

    run_info = {
        **config.to_dict(),
        "num_params": num_params,
        "tokenizer": tokenizer.name_or_path,
        "method": data.lineage.method,
        "num_generations": data.lineage.num_generations,
        "real_tokens": data.lineage.real_tokens,
        "synthetic_tokens": data.lineage.synthetic_tokens,
        "num_processes": world_size,
        "gradient_accumulation_steps": accumulation,
        "total_steps": total_steps,
    }
    counters = {"step": 0, "tokens": 0, "real_tokens_seen": 0, "synthetic_tokens_seen": 0}
    metrics_path = output_dir / "metrics.jsonl"
    ckpt = (
        resolve_checkpoint(output_dir, config.resume_from_checkpoint)
        if config.resume_from_checkpoint
        else None
    )
    if ckpt is not None:
        saved = json.loads((ckpt / "trainer_state.json").read_text())
        check_resumable(saved, config, world_size)
        accelerator.load_state(str(ckpt))
        counters = {k: saved[k] for k in counters}
        accelerator.print(f"resumed from {ckpt} at step {counters['step']}")
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.json").write_text(json.dumps(run_info, indent=2))
        if counters["step"]:
            truncate_metrics(metrics_path, counters["step"])
        elif metrics_path.exists():
            metrics_path.unlink()
    accelerator.init_trackers(config.run_name or output_dir.name, config=_flat_hparams(run_info))

    seq_len, batch = config.data.seq_len, config.global_batch_size
    n_syn = config.mix.synthetic_per_batch
    warmup = warmup_steps(total_steps, config.optim.warmup_fraction)
    accelerator.print(
        f"params {num_params / 1e6:.2f}M | processes {world_size} × micro "
        f"{config.micro_batch_size} × accumulation {accumulation} = {batch} sequences/step "
        f"({batch - n_syn} real, {n_syn} synthetic)\n"
        f"tokens/step {batch * seq_len:,} | total steps {total_steps:,} (warmup {warmup}; running "
        f"{planned - counters['step']:,} from step {counters['step']}) | real train tokens "
        f"{data.lineage.real_tokens:,} | synthetic train tokens "
        f"{data.lineage.synthetic_tokens:,} | "
        f"method {data.lineage.method} G={data.lineage.num_generations}"
    )

    batches = StepBatches(data, config.micro_batch_size, accumulation, accelerator.device)
    n_roles = len(ROLE_NAMES)
    interval = torch.zeros(
        2 * (1 + len(STREAM_NAMES) + n_roles), dtype=torch.float64, device=accelerator.device
    )
    eval_batch = config.eval.batch_size or config.micro_batch_size
    last_eval: dict[str, Any] = {}
    t_start = t_last = time.perf_counter()
    tokens_at_last = counters["tokens"]
    progress = tqdm(
        total=planned,
        initial=counters["step"],
        unit="step",
        disable=not accelerator.is_main_process,
    )
    grad_norm = None
    model.train()

    def run_eval(step: int) -> dict[str, Any]:
        result = evaluate(
            accelerator,
            model,
            data.eval_set,
            seq_len=seq_len,
            batch_size=eval_batch,
            position_bucket=config.eval.position_bucket,
        )
        if accelerator.is_main_process:
            append_jsonl(metrics_path, {"kind": "eval", "step": step, **result})
        scalars = {f"eval/{k}": v for k, v in result.items() if isinstance(v, float)}
        accelerator.log(scalars, step=step)
        accelerator.print(f"step {step}: " + " ".join(f"{k}={v:.4f}" for k, v in scalars.items()))
        return result

    while counters["step"] < planned:
        step_stats = torch.zeros_like(interval)
        seen = torch.zeros(1 + len(STREAM_NAMES), dtype=torch.float64, device=accelerator.device)
        for micro in batches.next_step():
            with accelerator.accumulate(model):
                logits = model(
                    input_ids=micro["input_ids"], position_ids=micro.get("position_ids")
                ).logits
                loss, stats = token_losses(logits, micro, n_roles)
                step_stats += stats
                seen += tokens_seen(micro)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    if config.optim.clip > 0:
                        grad_norm = accelerator.clip_grad_norm_(
                            model.parameters(), config.optim.clip
                        )
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
        # One all-reduce per step for the loss sums and the token counts of all processes.
        reduced = accelerator.reduce(torch.cat([step_stats, seen]), reduction="sum")
        interval += reduced[: len(interval)]
        seen = reduced[len(interval) :].tolist()
        counters["tokens"] += int(seen[0])
        counters["real_tokens_seen"] += int(seen[1])
        counters["synthetic_tokens_seen"] += int(seen[2])
        counters["step"] += 1
        step = counters["step"]
        progress.update(1)

        if step % config.log_every == 0 or step == planned:
            now = time.perf_counter()
            tokens_per_s = (counters["tokens"] - tokens_at_last) / max(now - t_last, 1e-9)
            t_last, tokens_at_last = now, counters["tokens"]
            record = {
                "kind": "train",
                "step": step,
                **stats_to_metrics(interval.cpu(), ROLE_NAMES),
                "lr": lr_at(
                    step - 1,
                    lr=config.optim.lr,
                    total_steps=total_steps,
                    warmup=warmup,
                    min_lr=config.optim.min_lr,
                ),
                **{k: v for k, v in counters.items() if k != "step"},
                "tokens_per_s": tokens_per_s,
            }
            if grad_norm is not None:
                record["grad_norm"] = float(grad_norm)  # of the last step, before clipping
            interval.zero_()
            if accelerator.is_main_process:
                append_jsonl(metrics_path, record)
                progress.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{tokens_per_s:,.0f}")
            accelerator.log(
                {k: v for k, v in record.items() if k not in ("kind", "step")}, step=step
            )
        paused_at = time.perf_counter()
        if (config.eval_every and step % config.eval_every == 0) or step == planned:
            last_eval = run_eval(step)
        if (config.save_every and step % config.save_every == 0) or step == planned:
            save_checkpoint(
                accelerator,
                output_dir,
                {**counters, "num_processes": world_size, "config": config.to_dict()},
                run_info,
            )
        t_last += time.perf_counter() - paused_at  # eval and checkpoints are not training time
    progress.close()

    if not last_eval and data.eval_set.iid:
        last_eval = run_eval(counters["step"])
    wall_s = time.perf_counter() - t_start
    summary = {
        **run_info,
        "iid_loss": last_eval.get("iid_loss", math.nan),
        "long_context_loss": last_eval.get("long_context_loss", math.nan),
        "steps": counters["step"],
        "tokens": counters["tokens"],
        "real_tokens_seen": counters["real_tokens_seen"],
        "synthetic_tokens_seen": counters["synthetic_tokens_seen"],
        "wall_s": wall_s,
    }
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # An ordinary HF model folder beside the Accelerate state, for downstream eval.
        accelerator.unwrap_model(model).save_pretrained(output_dir / "final")
        tokenizer.save_pretrained(output_dir / "final")
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    accelerator.end_training()
    return summary
