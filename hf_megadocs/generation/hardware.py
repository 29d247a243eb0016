"""One line naming the hardware a generation runs on, so that rates are compared like for like.

The store's run records carry it (:mod:`.store_runs`) and the pre-run estimate
(:mod:`.estimate`) only takes the generation rate of recorded runs whose line is the same:
a rate measured on a 2-core laptop says nothing about an H100. GPUs are read with
``nvidia-smi`` (no CUDA library is imported for it), CPUs from ``/proc/cpuinfo``.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Hardware:
    """What generates: a label for run records and the count of devices it bills."""

    label: str
    """e.g. "1x NVIDIA H100 80GB HBM3" or "cpu: AMD EPYC 7B13 (2 cores)"."""
    devices: int
    """GPUs visible to the job (device-hours = wall hours × this); 1 on a CPU-only machine."""
    kind: str
    """"gpu" or "cpu": what the device-hours are hours of."""


def _visible_gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    names = [line.strip() for line in out.splitlines() if line.strip()]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return names
    wanted = [part.strip() for part in visible.split(",") if part.strip()]
    if all(part.isdigit() for part in wanted):
        return [names[int(part)] for part in wanted if int(part) < len(names)]
    return names[: len(wanted)]  # UUIDs: the count is what matters here


def _cpu_model() -> str:
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@functools.cache
def current_hardware() -> Hardware:
    """The hardware of this process (cached: it does not change while a job runs)."""
    gpus = _visible_gpus()
    if gpus:
        names = sorted(set(gpus))
        return Hardware(f"{len(gpus)}x {' + '.join(names)}", len(gpus), "gpu")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return Hardware(f"cpu: {_cpu_model()} ({cores} cores)", 1, "cpu")


__all__ = ["Hardware", "current_hardware"]
