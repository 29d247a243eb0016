"""The bundled YAML configs, installed with the package: ``--config tiny_cpu`` names one.

``tiny_cpu`` and ``paper_300m`` are training configs (``hf-megadocs train --config
tiny_cpu``), ``study_cpu`` and ``study_gpu`` study configs (``hf-megadocs study --config
study_cpu``). A checkout also shows them as ``recipes/configs/`` (a link to this folder), so
``--config recipes/configs/tiny_cpu.yaml`` keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
"""The folder holding the bundled ``*.yaml`` configs."""


def bundled_config_names() -> list[str]:
    """The names ``--config`` accepts besides a path (``tiny_cpu``, ``study_cpu``, ...)."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))


def config_path(value: str) -> str:
    """``value`` itself when it is a file; else the bundled config it names.

    A value that is neither passes through unchanged, so the parser's own "no such file"
    error still names what the user typed.
    """
    if Path(value).is_file():
        return value
    bundled = CONFIG_DIR / f"{value.removesuffix('.yaml')}.yaml"
    return str(bundled) if "/" not in value and bundled.is_file() else value


def with_bundled_configs(argv: Sequence[str]) -> list[str]:
    """``argv`` with every ``--config NAME`` / ``--config=NAME`` resolved by :func:`config_path`."""
    resolved = list(argv)
    for i, item in enumerate(resolved):
        if item == "--config" and i + 1 < len(resolved):
            resolved[i + 1] = config_path(resolved[i + 1])
        elif item.startswith("--config="):
            resolved[i] = "--config=" + config_path(item.split("=", 1)[1])
    return resolved


__all__ = ["CONFIG_DIR", "bundled_config_names", "config_path", "with_bundled_configs"]
