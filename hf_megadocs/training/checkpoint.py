"""The run directory: its lock, metrics.jsonl, checkpoints and the ``latest`` pointer.

One trainer at a time holds ``run.lock`` (:func:`run_lock`); a second is refused naming it.

Checkpoints are Accelerate ``save_state`` folders ``checkpoints/step_<N>/`` with our
``trainer_state.json`` (step and token counters) and the resolved ``config.json`` beside
them; ``checkpoints/latest`` names the newest one and is replaced atomically after the
state is fully written, so resuming never parses folder names.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_megadocs.jsonl import append_record, read_records
from hf_megadocs.locks import ExclusiveLock

if TYPE_CHECKING:
    from accelerate import Accelerator

    from hf_megadocs.training.config import TrainConfig

logger = logging.getLogger(__name__)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one metrics record as a line (a torn tail from a killed run is ended first)."""
    append_record(path, record, fsync=False)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records past ``step`` (written by a killed run after its last checkpoint).

    A torn last line is dropped with a warning; the file is rewritten atomically.
    """
    if not path.exists():
        return
    records, _ = read_records(path)
    kept = [record for record in records if record.get("step", 0) <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(record) + "\n" for record in kept))
    os.replace(tmp, path)


def resolve_checkpoint(output_dir: Path, resume: str) -> Path | None:
    """The checkpoint folder for ``resume_from_checkpoint``.

    "latest" reads the ``checkpoints/latest`` pointer (never folder names) and gives None
    when no checkpoint was saved yet, so a resubmitted job starts fresh the first time.
    """
    if resume == "latest":
        pointer = output_dir / "checkpoints" / "latest"
        if not pointer.exists():
            logger.warning(
                "resume_from_checkpoint='latest': no checkpoint in %s yet; starting fresh",
                output_dir,
            )
            return None
        name = pointer.read_text().strip()
        target = output_dir / "checkpoints" / name
        if not (target / "trainer_state.json").exists():
            raise ValueError(
                f"resume_from_checkpoint='latest': {pointer} names {name!r}, but {target} is "
                "missing or incomplete (no trainer_state.json); pass an existing "
                "checkpoints/step_<N> folder, or delete the pointer to start fresh."
            )
        return target
    path = Path(resume)
    if not (path / "trainer_state.json").exists():
        raise ValueError(
            f"resume_from_checkpoint={resume!r} is not a checkpoint folder (no "
            "trainer_state.json); "
            "use 'latest' or a checkpoints/step_<N> folder."
        )
    return path


def checkpoint_of(path: str | Path, what: str) -> Path:
    """``path`` if it is a checkpoint folder, else the latest checkpoint of run folder ``path``.

    ``what`` names the setting in the error (e.g. ``"continue_from"``).
    """
    path = Path(path)
    if (path / "trainer_state.json").is_file():
        return path
    pointer = path / "checkpoints" / "latest"
    if pointer.is_file():
        found = path / "checkpoints" / pointer.read_text().strip()
        if (found / "trainer_state.json").is_file():
            return found
    raise ValueError(
        f"{what}={str(path)!r} is neither a checkpoint folder (with trainer_state.json) nor a "
        "run folder with checkpoints/latest; pass the output_dir of a recipes/train.py run "
        "that saved a checkpoint, or one of its checkpoints/step_<N> folders."
    )


RESUME_FIELDS = ("data.seq_len", "data.attention", "mix.synthetic_share",
                 "mix.global_batch_size", "mix.seed")  # fmt: skip
"""Settings a resume must keep: they decide which tokens each step sees."""
SHAPE_FIELDS = ("model.pretrained", "model.hidden_size", "model.intermediate_size",
                "model.num_hidden_layers", "model.num_attention_heads",
                "model.num_key_value_heads", "model.tie_word_embeddings",
                "model.vocab_size")  # fmt: skip
"""Settings a resume must keep: they decide the shapes of the checkpoint's weights (the
architecture fields only for a fresh model; a pretrained one ignores them)."""


def check_resumable(saved: dict[str, Any], config: TrainConfig, world_size: int) -> None:
    """Refuse to resume when the data order or the weights' shapes would change, naming the
    field; ``saved`` is the checkpoint's ``trainer_state.json``.

    Checked before data and model are built. The sampler's own ``load_state_dict`` checks
    again, with the stream lengths (known once the data is built).
    """
    before, now = saved["config"], config.to_dict()
    names = RESUME_FIELDS + (SHAPE_FIELDS if config.model.pretrained is None else SHAPE_FIELDS[:1])
    checks = {"num_processes": (saved["num_processes"], world_size)}
    for name in names:
        section, key = name.split(".")
        if key in before.get(section, {}):  # a field older checkpoints lack is not checked
            checks[name] = (before[section][key], now[section][key])
    for name, (was, is_now) in checks.items():
        if was != is_now:
            raise ValueError(
                f"cannot resume: {name} was {was!r} in the checkpoint and is {is_now!r} now; "
                "the data order or the model would change. Restore it, or start afresh "
                "(--overwrite_output_dir, or another --output_dir)."
            )


def checked_state(
    checkpoint: Path | None, config: TrainConfig, world_size: int
) -> dict[str, Any] | None:
    """The ``trainer_state.json`` of the checkpoint to resume, after :func:`check_resumable`
    (call it before data and model are built); None without a checkpoint."""
    if checkpoint is None:
        return None
    saved = json.loads((checkpoint / "trainer_state.json").read_text())
    check_resumable(saved, config, world_size)
    return saved


def finished_summary(config: TrainConfig, checkpoint: Path | None) -> dict[str, Any] | None:
    """``summary.json`` when ``checkpoint`` is the finished run's last step with these steps."""
    summary_path = Path(config.output_dir) / "summary.json"
    if checkpoint is None or not summary_path.is_file():
        return None
    try:
        summary = json.loads(summary_path.read_text())
    except ValueError:
        return None  # a damaged summary is rewritten by finishing again
    step = json.loads((checkpoint / "trainer_state.json").read_text())["step"]
    if summary.get("steps") == step and summary.get("max_steps") == config.max_steps:
        return summary
    return None


@contextmanager
def run_lock(config: TrainConfig) -> Iterator[None]:
    """Hold ``<output_dir>/run.lock`` for the run (global rank 0 only: one per run folder)."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    lock = ExclusiveLock(
        Path(config.output_dir) / "run.lock",
        f"run folder {config.output_dir}",
        fix="Two trainers on one folder would write over each other's checkpoints and "
        "metrics: wait for it, stop it, or pass another --output_dir.",
    )
    with lock:
        yield


def recorded_eval(metrics_path: Path, step: int) -> dict[str, Any]:
    """The eval record of ``step`` in ``metrics.jsonl``, or {} (a finished run's final eval)."""
    if not metrics_path.is_file():
        return {}
    records, _ = read_records(metrics_path)
    evals = [r for r in records if r.get("kind") == "eval" and r.get("step") == step]
    return evals[-1] if evals else {}


def save_checkpoint(
    accelerator: Accelerator, output_dir: Path, state: dict[str, Any], run_info: dict[str, Any]
) -> None:
    """``save_state`` to ``checkpoints/step_<N>`` (all ranks); rank 0 adds extras + pointer.

    A full disk (or quota) raises :class:`~hf_megadocs.disk_full.DiskFullError` naming the
    folder: ``latest`` still names the previous checkpoint, which is intact.
    """
    ckpt_root = output_dir / "checkpoints"
    name = f"step_{state['step']}"
    with _disk_full_errors(ckpt_root, name):
        accelerator.save_state(str(ckpt_root / name))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (ckpt_root / name / "trainer_state.json").write_text(json.dumps(state, indent=2))
            (ckpt_root / name / "config.json").write_text(json.dumps(run_info, indent=2))
            tmp = ckpt_root / "latest.tmp"
            tmp.write_text(name)
            os.replace(tmp, ckpt_root / "latest")  # atomic: a kill never leaves a half pointer
    accelerator.wait_for_everyone()


def _disk_full_errors(ckpt_root: Path, name: str) -> AbstractContextManager[None]:
    """A full disk while saving ``ckpt_root/name`` (OSError ENOSPC/EDQUOT, or torch's
    "unexpected pos") as one error: the pointer moves only after a complete save, so the
    checkpoint it names is intact; the new folder is partial."""
    from hf_megadocs.disk_full import disk_full_errors

    pointer = ckpt_root / "latest"
    previous = pointer.read_text().strip() if pointer.is_file() else None
    kept = (
        f"The previous checkpoint {ckpt_root / previous} is intact (checkpoints/latest still "
        f"names it; {name} is partial and can be deleted)."
        if previous
        else f"No earlier checkpoint exists ({name} is partial and can be deleted)."
    )
    return disk_full_errors(
        ckpt_root / name,
        what=f"checkpoint {ckpt_root / name}",
        kept=kept,
        resume="resume with --resume_from_checkpoint latest",
        torch_save=True,
    )
