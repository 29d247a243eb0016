"""What the run folder already holds, settled before anything is built or written.

A trainer started on an ``output_dir`` that holds an earlier run (a checkpoint or a
``summary.json``) is refused with the folder untouched, unless it resumes
(``--resume_from_checkpoint latest``) or overwrites (``--overwrite_output_dir``: every
record of the earlier run is deleted first, so none is mixed with the new run's). A
resume of a run that trained its own tokenizer needs that tokenizer intact: the
checkpoint's weights depend on its token ids. The settings a resume must keep are
checked against the checkpoint's own ``trainer_state.json``
(:func:`~hf_megadocs.training.checkpoint.check_resumable`) before data and model are built.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from hf_megadocs.training import continuation
from hf_megadocs.training.checkpoint import resolve_checkpoint
from hf_megadocs.training.tokenizer_training import tokenizer_damage

if TYPE_CHECKING:
    from hf_megadocs.training.config import TrainConfig

logger = logging.getLogger(__name__)

RECORDS = (
    "checkpoints",
    "summary.json",
    "metrics.jsonl",
    "config.json",
    "final",
    "tokenizer",
    ".tokenizer.partial",
    "logs",
)
"""What a run writes in its ``output_dir`` (``run.lock`` aside): what an overwrite deletes."""

AFRESH = "--overwrite_output_dir to delete its records and train afresh, or another --output_dir"


def earlier_run(output_dir: Path) -> list[str]:
    """What in ``output_dir`` shows an earlier run that got somewhere: its checkpoints
    folder (not empty) and its ``summary.json``; [] for a new folder."""
    checkpoints = output_dir / "checkpoints"
    found = ["checkpoints/"] if checkpoints.is_dir() and any(checkpoints.iterdir()) else []
    return found + (["summary.json"] if (output_dir / "summary.json").exists() else [])


def settle_run_folder(config: TrainConfig) -> tuple[Path | None, Path | None]:
    """The checkpoint to resume and the continuation's origin (either may be None), once
    the run folder is fit for this run; hold the run lock while calling it.

    Raises ValueError, with the folder unchanged, on a rerun over an earlier run without
    ``resume_from_checkpoint`` or ``overwrite_output_dir``, on both at once, and on a
    resume whose run tokenizer is missing or damaged. With ``overwrite_output_dir`` the
    earlier run's records are deleted (by global rank 0) before this returns.
    """
    out = Path(config.output_dir)
    resume = config.resume_from_checkpoint
    if config.overwrite_output_dir and resume:
        raise ValueError(
            f"overwrite_output_dir and resume_from_checkpoint={resume!r} "
            "exclude each other: pass one of them (resume the run, or delete it and start afresh)."
        )
    checkpoint = resolve_checkpoint(out, resume) if resume else None
    origin = continuation.continuation_origin(config)  # checked here, unused on a resume
    if config.overwrite_output_dir:
        if origin is not None and origin.resolve().is_relative_to(out.resolve()):
            raise ValueError(
                f"continue_from={config.continue_from!r} is inside output_dir {out}, which "
                "overwrite_output_dir would delete; continue into another --output_dir."
            )
        clear_records(out)
        return None, origin
    found = earlier_run(out)
    if found and not resume:
        raise ValueError(
            f"{out} holds an earlier run ({' and '.join(found)}); pass --resume_from_checkpoint "
            f"latest to continue it, {AFRESH}."
        )
    if checkpoint is None and "summary.json" in found:
        raise ValueError(
            f"{out} holds a finished run's summary.json but no checkpoint to resume; pass {AFRESH}."
        )
    if checkpoint is not None and config.model.train_tokenizer_vocab:
        damage = tokenizer_damage(out / "tokenizer")
        if damage is not None:
            raise ValueError(
                f"cannot resume from {checkpoint}: {damage}, and the checkpoint's model was "
                "trained with that tokenizer (a new one would change the token ids). Restore "
                f"the folder (a finished run's final/ holds a copy), or pass {AFRESH}."
            )
    return checkpoint, origin


def clear_records(output_dir: Path) -> None:
    """Delete the earlier run's records in ``output_dir`` (global rank 0 only), saying so."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    removed = []
    for name in RECORDS:
        path = output_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    if removed:
        logger.warning(
            "overwrite_output_dir: deleted the earlier run's %s in %s",
            ", ".join(removed),
            output_dir,
        )


__all__ = ["RECORDS", "clear_records", "earlier_run", "settle_run_folder"]
