"""The figures of a pre-run estimate (:mod:`.estimate`) and how they are said."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PromptEstimate:
    """The estimate of one prompt template's missing requests."""

    prompt_id: str
    prompt_hash: str
    max_new_tokens: int
    missing: int
    prompt_tokens: int
    output_tokens_per_request: float
    output_from: str
    """Where the output length comes from (stored generations, or the upper bound)."""
    bytes_per_request: float
    bytes_from: str

    @property
    def output_tokens(self) -> int:
        return round(self.missing * self.output_tokens_per_request)

    @property
    def upper_bound(self) -> bool:
        return self.output_from.startswith("upper bound")


@dataclass
class GenerationEstimate:
    """Requests, tokens, time and disk a generation is expected to cost (see the module)."""

    generator: str
    hardware: str
    devices: int
    device_kind: str
    requests: int | None = None
    """The job's distinct requests, stored ones included (None for several jobs at once,
    whose requests may overlap)."""
    prompts: list[PromptEstimate] = field(default_factory=list)
    prompt_tokens_from: str = ""
    tokens_per_s: float | None = None
    """Generated tokens per second of one engine."""
    engines: int = 1
    """Engines generating at once (``data_parallel_size``)."""
    rate_from: str = "unknown"
    startup_s: float = 0.0
    calibrated: int = 0
    """Requests generated and stored by a calibration batch for this estimate."""

    @property
    def missing(self) -> int:
        return sum(p.missing for p in self.prompts)

    @property
    def prompt_tokens(self) -> int:
        return sum(p.prompt_tokens for p in self.prompts)

    @property
    def output_tokens(self) -> int:
        return sum(p.output_tokens for p in self.prompts)

    @property
    def generation_s(self) -> float | None:
        """Seconds of generation at the rate (None without one)."""
        if self.tokens_per_s is None:
            return None
        return self.output_tokens / (self.tokens_per_s * self.engines)

    @property
    def wall_s(self) -> float | None:
        """Engine start plus generation (None without a rate; 0 when nothing is missing)."""
        if not self.missing:
            return 0.0
        seconds = self.generation_s
        return None if seconds is None else self.startup_s + seconds

    @property
    def device_hours(self) -> float | None:
        wall = self.wall_s
        return None if wall is None else wall / 3600 * self.devices

    @property
    def disk_bytes(self) -> int:
        return round(sum(p.missing * p.bytes_per_request for p in self.prompts))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view, with the derived figures and the text."""
        return {
            **dataclasses.asdict(self),
            "missing": self.missing,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "wall_s": self.wall_s,
            "device_hours": self.device_hours,
            "disk_bytes": self.disk_bytes,
            "text": self.as_text(),
        }

    def as_text(self) -> str:
        """The estimate as a few lines for the log and the terminal."""
        lines = [f"estimate for {self.generator} on {self.hardware}:"]
        notes = []
        if self.requests is not None:
            notes.append(f"of {self.requests:,}")
            notes.append(f"{self.requests - self.missing - self.calibrated:,} already stored")
        if self.calibrated:
            notes.append(f"{self.calibrated:,} just generated to calibrate, stored")
        lines.append(
            f"  requests missing from the store: {self.missing:,}"
            + (f" ({'; '.join(notes)})" if notes else "")
        )
        if not self.missing:
            return "\n".join(lines + ["  nothing to generate"])
        lines.append(f"  prompt tokens: {self.prompt_tokens:,} ({self.prompt_tokens_from})")
        bound = any(p.upper_bound for p in self.prompts)
        lines.append(
            f"  output tokens: {'at most ' if bound and len(self.prompts) == 1 else ''}"
            f"{self.output_tokens:,}"
        )
        for p in self.prompts:
            lines.append(
                f"    {p.prompt_id} ({p.prompt_hash[:8]}, max_new_tokens={p.max_new_tokens}): "
                f"{p.missing:,} requests x {p.output_tokens_per_request:,.1f} = "
                f"{p.output_tokens:,} ({p.output_from})"
            )
        if self.tokens_per_s is None:
            lines.append(f"  rate: unknown ({self.rate_from})")
        else:
            kind = "GPU" if self.device_kind == "gpu" else "machine"
            start = f"engine start {format_seconds(self.startup_s)} + " if self.startup_s else ""
            lines += [
                f"  rate: {self.tokens_per_s:,.1f} generated tok/s"
                + (f" per engine x {self.engines} engines" if self.engines > 1 else "")
                + f" ({self.rate_from})",
                f"  wall time: {format_seconds(self.wall_s or 0.0)} ({start}generation "
                f"{format_seconds(self.generation_s or 0.0)})"
                + ("; an upper bound, as the output tokens are" if bound else ""),
                (
                    f"  device-hours: {self.device_hours or 0.0:,.2f} {kind}-hours "
                    f"({self.devices} device(s))"
                ),
            ]
        how = "; ".join(sorted({p.bytes_from for p in self.prompts}))
        lines.append(f"  disk: {format_bytes(self.disk_bytes)} of store records ({how})")
        return "\n".join(lines)


def format_seconds(seconds: float) -> str:
    """``42 s``, ``12.5 min``, ``3.2 h`` or ``6.7 days``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def format_bytes(size: float) -> str:
    """``512 B``, ``3.4 MB``, ``1.2 TB`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


__all__ = ["GenerationEstimate", "PromptEstimate", "format_bytes", "format_seconds"]
