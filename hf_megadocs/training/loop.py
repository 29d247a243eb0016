"""The training loop, read top to bottom (nanoGPT's order on Accelerate).

:func:`train`: run lock, run folder settled (:mod:`~.run_folder`: a rerun over an earlier
run refused, resume target checked; a finished run stops here) → accelerator → resume
settings checked → tokenizer, model, data → optimizer, schedule → ``prepare`` → resume (or
continue from another run's checkpoint on new data) → print the plan → steps (forward
under ``accumulate``, backward, clip, step, schedule, zero; log, eval, save when due) →
final eval, summary, ``end_training`` (always, in ``finally``). Each phase is one named
function below.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_megadocs.training import continuation
from hf_megadocs.training.accelerator import flat_hparams, make_accelerator
from hf_megadocs.training.checkpoint import (
    append_jsonl,
    checked_state,
    finished_summary,
    recorded_eval,
    run_lock,
    save_checkpoint,
    truncate_metrics,
)
from hf_megadocs.training.config import TrainConfig
from hf_megadocs.training.losses import LOSS_GROUPS, SEEN_GROUPS, loss_metrics
from hf_megadocs.training.optim import build_optimizer, build_scheduler, warmup_steps
from hf_megadocs.training.run_folder import settle_run_folder
from hf_megadocs.training.throughput import Throughput

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)


@dataclass
class Counters:
    """What the run has done so far; checkpointed, so a resumed run continues the counts."""

    step: int = 0
    tokens: int = 0
    real_tokens_seen: int = 0
    synthetic_tokens_seen: int = 0


@dataclass
class Run:
    """Everything the steps share: built once by :func:`_prepare`."""

    config: TrainConfig
    accelerator: Accelerator
    model: Any
    tokenizer: Any
    optimizer: Any
    scheduler: Any
    data: Any
    """``hf_megadocs.training.data.streams.TrainData``."""
    batches: Any
    """``StepBatches`` over the mixing sampler."""
    run_info: dict[str, Any]
    """config.json: the resolved config plus what the data and the launch made of it."""
    total_steps: int
    planned: int
    """Global step this invocation runs to (a continuation's start + at most ``max_steps``)."""
    counters: Counters = field(default_factory=Counters)
    interval: Any = None
    """Loss sums since the last train log record (``[group, (sum, count)]``); checkpointed,
    so the first record after a resume equals the uninterrupted run's."""
    saved_interval: list[list[float]] | None = None
    """``interval`` as the resumed checkpoint saved it."""
    lr: float = 0.0
    """Learning rate of the last optimizer step."""
    grad_norm: float | None = None
    """Gradient norm of the last step, before clipping."""
    started: float = field(default_factory=time.perf_counter)
    """When the steps began (``summary.json``'s ``wall_s`` counts from here)."""

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def metrics_path(self) -> Path:
        return self.output_dir / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.output_dir / "summary.json"


def train(config: TrainConfig) -> dict[str, Any]:
    """Train as ``config`` says; returns the summary also written to ``summary.json``.

    Refuses, before anything expensive, a run folder another trainer holds
    (:class:`~hf_megadocs.locks.LockHeldError`), a resume target that is not a complete
    checkpoint or whose settings differ, and a rerun over an earlier run without
    ``resume_from_checkpoint`` or ``overwrite_output_dir`` (``ValueError``). Resuming a
    finished run changes nothing.
    """
    with run_lock(config):
        checkpoint, origin = settle_run_folder(config)  # refuses, or clears on overwrite
        finished = finished_summary(config, checkpoint)
        if finished is not None:
            print(
                f"{config.output_dir} already finished at step {finished['steps']}; nothing to "
                "do (raise --max_steps to train further)"
            )
            return finished
        accelerator = make_accelerator(config)
        try:
            saved = checked_state(checkpoint, config, accelerator.num_processes)  # or None
            run = _prepare(config, accelerator, origin)
            if checkpoint is not None and saved is not None:
                _resume(run, checkpoint, saved)
            elif origin is not None:  # weights, AdamW moments, counters; data stays this run's
                state = continuation.load_origin(run.accelerator, run.model, run.optimizer, origin)
                run.counters = Counters(**{k: state[k] for k in asdict(Counters())})
            _start_records(run)
            _print_plan(run)
            last_eval = _train_steps(run)
            return _finish(run, last_eval)
        finally:
            accelerator.end_training()


# ---------------------------------------------------------------- setup


def _prepare(config: TrainConfig, accelerator: Accelerator, origin: Path | None = None) -> Run:
    """Tokenizer, model, data, optimizer and schedule, passed through one ``prepare``."""
    from hf_megadocs.training.data.collate import configure_model_for_packing
    from hf_megadocs.training.data.streams import StepBatches, build_train_data
    from hf_megadocs.training.model import build_model, load_tokenizer

    if config.model.train_tokenizer_vocab:
        from hf_megadocs.training.tokenizer_training import run_tokenizer

        tokenizer = run_tokenizer(config, accelerator)
    else:
        tokenizer = load_tokenizer(config.model)
    origin_config = continuation.check_continuable(origin, config, tokenizer) if origin else None
    model = build_model(config.model, tokenizer, config.data.seq_len)
    # Without this, a KV cache built in training hides the attention blocks of
    # megadoc/document mode (transformers then falls back to one causal block per row).
    configure_model_for_packing(model, config.data.attention)
    data = build_train_data(config, tokenizer, accelerator)
    total_steps = len(data.sampler)
    if total_steps < 1:
        raise ValueError("the mixing sampler plans 0 steps; add data or raise mix.real_epochs.")
    num_params = sum(p.numel() for p in model.parameters())
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_scheduler(optimizer, config.optim, total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    accelerator.register_for_checkpointing(data.sampler)
    accumulation = accelerator.gradient_accumulation_steps
    run_info = {
        **config.to_dict(),
        "num_params": num_params,
        "tokenizer": tokenizer.name_or_path,
        "vocab_size": len(tokenizer),
        "method": data.lineage.method,
        "num_generations": data.lineage.num_generations,
        "real_tokens": data.lineage.real_tokens,
        "synthetic_tokens": data.lineage.synthetic_tokens,
        "num_processes": accelerator.num_processes,
        "gradient_accumulation_steps": accumulation,
        "total_steps": total_steps,
        "real_passes": data.sampler.real_passes,
    }
    offset = continuation.origin_step(origin)
    if origin is not None and origin_config is not None:
        run_info["continued_from"] = continuation.continuation_record(origin, origin_config)
    return Run(
        config=config,
        accelerator=accelerator,
        model=model,
        tokenizer=tokenizer,
        optimizer=optimizer,
        scheduler=scheduler,
        data=data,
        batches=StepBatches(data, config.micro_batch_size, accumulation, accelerator.device),
        run_info=run_info,
        total_steps=total_steps,
        planned=offset + min(total_steps, config.max_steps or total_steps),
    )


def _resume(run: Run, ckpt: Path, saved: dict[str, Any]) -> None:
    """Load checkpoint ``ckpt`` (``saved``: its ``trainer_state.json``, already checked)."""
    run.accelerator.load_state(str(ckpt))
    run.counters = Counters(**{k: saved[k] for k in asdict(Counters())})
    run.saved_interval = saved.get("log_interval")  # absent in older checkpoints
    run.accelerator.print(f"resumed from {ckpt} at step {run.counters.step}")


def _start_records(run: Run) -> None:
    """config.json, metrics.jsonl cut back to the resumed step, and the trackers."""
    if run.accelerator.is_main_process:
        run.output_dir.mkdir(parents=True, exist_ok=True)
        (run.output_dir / "config.json").write_text(json.dumps(run.run_info, indent=2))
        if run.counters.step:
            truncate_metrics(run.metrics_path, run.counters.step)
        elif run.metrics_path.exists():
            run.metrics_path.unlink()
    run.accelerator.init_trackers(
        run.config.run_name or run.output_dir.name, config=flat_hparams(run.run_info)
    )


def _print_plan(run: Run) -> None:
    """The derived numbers, before step 1 (nanoGPT prints them too)."""
    config, lineage = run.config, run.data.lineage
    batch, synthetic = config.global_batch_size, float(config.mix.synthetic_per_batch)
    run.accelerator.print(
        f"params {run.run_info['num_params'] / 1e6:.2f}M | processes "
        f"{run.accelerator.num_processes} × micro {config.micro_batch_size} × accumulation "
        f"{run.accelerator.gradient_accumulation_steps} = {batch} sequences/step "
        f"({batch - synthetic:g} real, {synthetic:g} synthetic on average; real passes "
        f"{run.run_info['real_passes']:.4f} for E={config.mix.real_epochs:g})\n"
        f"tokens/step {batch * config.data.seq_len:,} | total steps {run.total_steps:,} "
        f"(warmup {warmup_steps(run.total_steps, config.optim.warmup_fraction)}; running "
        f"{run.planned - run.counters.step:,} from step {run.counters.step}) | real train tokens "
        f"{lineage.real_tokens:,} | synthetic train tokens {lineage.synthetic_tokens:,} | "
        f"method {lineage.method} G={lineage.num_generations}"
    )


# ---------------------------------------------------------------- steps


def _due(step: int, every: int, last: int) -> bool:
    return (every > 0 and step % every == 0) or step == last


def _train_steps(run: Run) -> dict[str, Any]:
    """Optimizer steps until ``planned``; logs, evaluates and saves when due."""
    import torch
    from tqdm.auto import tqdm

    config = run.config
    run.interval = torch.zeros(
        len(LOSS_GROUPS), 2, dtype=torch.float64, device=run.accelerator.device
    )
    if run.saved_interval is not None:
        run.interval += torch.tensor(run.saved_interval, dtype=torch.float64).to(run.interval)
    last_eval: dict[str, Any] = {}
    run.started = time.perf_counter()
    timer = Throughput(run.counters.tokens)
    progress = tqdm(
        total=run.planned,
        initial=run.counters.step,
        unit="step",
        disable=not run.accelerator.is_main_process,
    )
    run.model.train()
    while run.counters.step < run.planned:
        _optimizer_step(run)
        step = run.counters.step
        progress.update(1)
        if _due(step, config.log_every, run.planned):
            record = _log_train(run, timer.rate(run.counters.tokens))
            progress.set_postfix(
                loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:,.0f}"
            )
        with timer.paused():  # eval and checkpoints are not training time
            if _due(step, config.eval_every, run.planned):
                last_eval = _evaluate(run)
            if _due(step, config.save_every, run.planned):
                _save(run)
    progress.close()
    if not last_eval and run.data.eval_set.iid:
        # No step ran (resumed at the last step, killed before summary.json): reuse the
        # final eval already recorded rather than append a second one.
        last_eval = recorded_eval(run.metrics_path, run.counters.step) or _evaluate(run)
    return last_eval


def _optimizer_step(run: Run) -> None:
    """One optimizer step over ``accumulation`` micro-batches, then one all-reduce of stats."""
    import torch

    from hf_megadocs.training.losses import token_losses, tokens_seen

    accelerator, model, optim = run.accelerator, run.model, run.config.optim
    step_sums = torch.zeros_like(run.interval)
    seen = torch.zeros(len(SEEN_GROUPS), dtype=torch.float64, device=accelerator.device)
    for micro in run.batches.next_step():
        with accelerator.accumulate(model):
            with accelerator.autocast():  # the loss's matmuls too, as the model's forward
                loss, sums = token_losses(model, micro, run.config.loss)
            step_sums += sums
            seen += tokens_seen(micro)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                if optim.clip > 0:
                    run.grad_norm = float(
                        accelerator.clip_grad_norm_(model.parameters(), optim.clip)
                    )
                run.lr = run.scheduler.get_last_lr()[0]  # the rate this step uses
                run.optimizer.step()
                run.scheduler.step()
                run.optimizer.zero_grad(set_to_none=True)
    reduced = accelerator.reduce(torch.cat([step_sums.flatten(), seen]), reduction="sum")
    run.interval += reduced[: step_sums.numel()].view_as(step_sums)
    tokens, real, synthetic = (int(x) for x in reduced[step_sums.numel() :].tolist())
    run.counters.tokens += tokens
    run.counters.real_tokens_seen += real
    run.counters.synthetic_tokens_seen += synthetic
    run.counters.step += 1


def _log_train(run: Run, tokens_per_s: float) -> dict[str, Any]:
    """One train record: losses since the last record, LR, counters, throughput."""
    counters = asdict(run.counters)
    record = {
        "kind": "train",
        "step": counters.pop("step"),
        **loss_metrics(run.interval.cpu()),
        "lr": run.lr,
        **counters,
        "tokens_per_s": tokens_per_s,
    }
    if run.grad_norm is not None:
        record["grad_norm"] = run.grad_norm
    run.interval.zero_()
    if run.accelerator.is_main_process:
        append_jsonl(run.metrics_path, record)
    run.accelerator.log(
        {k: v for k, v in record.items() if k not in ("kind", "step")}, step=record["step"]
    )
    return record


def _evaluate(run: Run) -> dict[str, Any]:
    """i.i.d. and long-context loss; one eval record."""
    from hf_megadocs.training.evaluation import evaluate

    config, step = run.config, run.counters.step
    result = evaluate(
        run.accelerator,
        run.model,
        run.data.eval_set,
        seq_len=config.data.seq_len,
        batch_size=config.eval.batch_size or config.micro_batch_size,
        position_bucket=config.eval.position_bucket,
        loss=config.loss,
    )
    if run.accelerator.is_main_process:
        append_jsonl(run.metrics_path, {"kind": "eval", "step": step, **result})
    scalars = {f"eval/{k}": v for k, v in result.items() if isinstance(v, float)}
    run.accelerator.log(scalars, step=step)
    run.accelerator.print(f"step {step}: " + " ".join(f"{k}={v:.4f}" for k, v in scalars.items()))
    return result


def _save(run: Run) -> None:
    state = {
        **asdict(run.counters),
        "log_interval": run.interval.cpu().tolist(),
        "num_processes": run.accelerator.num_processes,
        "config": run.config.to_dict(),
    }
    save_checkpoint(run.accelerator, run.output_dir, state, run.run_info)


def _finish(run: Run, last_eval: dict[str, Any]) -> dict[str, Any]:
    """summary.json and ``final/`` (an ordinary HF model folder for downstream eval)."""
    summary = {
        **run.run_info,
        "iid_loss": last_eval.get("iid_loss", math.nan),
        **{k: last_eval[k] for k in ("selection_loss",) if k in last_eval},
        "long_context_loss": last_eval.get("long_context_loss", math.nan),
        **asdict(run.counters),
        "steps": run.counters.step,
        "wall_s": time.perf_counter() - run.started,
    }
    summary.pop("step")
    run.accelerator.wait_for_everyone()
    if run.accelerator.is_main_process:
        run.accelerator.unwrap_model(run.model).save_pretrained(run.output_dir / "final")
        run.tokenizer.save_pretrained(run.output_dir / "final")
        run.summary_path.write_text(json.dumps(summary, indent=2))
    return summary


__all__ = ["Counters", "Run", "train"]
