"""Does adding hf_megadocs to a user's stack change any version? Metadata-only resolutions.

    pip install uv && python benchmarks/resolve_stacks.py [--uv PATH]

Resolves, with ``uv pip compile`` for Linux x86_64 / CPython 3.11 against the public index
(package metadata only, no wheel is downloaded), each stack alone and with this checkout's
``hf_megadocs`` added, and prints a Markdown table: the versions of the packages users care
about, and every package whose version differs between the two resolutions (a downgrade
caused by the plugin would show there).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STACKS = {
    "GPU generation (vllm)": (["vllm"], "vllm"),
    "training (torch, transformers, accelerate, datasets, trl, peft)": (
        ["torch", "transformers", "accelerate", "datasets", "trl", "peft"],
        "embedded,analysis,tensorboard",
    ),
}
SHOWN = ("vllm", "torch", "transformers", "accelerate", "datasets", "trl", "peft", "numpy")
PLATFORM = ["--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28"]


def resolve(uv: str, requirements: list[str]) -> tuple[dict[str, str], float]:
    """``{package: version}`` of one resolution, and its wall time in seconds."""
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "requirements.in"
        spec.write_text("\n".join(requirements) + "\n")
        started = time.monotonic()
        done = subprocess.run(
            [uv, "pip", "compile", str(spec), *PLATFORM, "--no-header", "--no-annotate"],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"uv pip compile failed for {requirements}:\n{done.stderr}")
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", done.stdout, re.MULTILINE)
    return {name.lower().replace("_", "-"): version for name, version in pins}, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uv", default=shutil.which("uv") or "uv", help="the uv executable")
    uv = parser.parse_args().uv
    print("| stack | resolution | " + " | ".join(SHOWN) + " | time |")
    print("|---|---|" + "---|" * (len(SHOWN) + 1))
    notes = []
    for stack, (packages, extras) in STACKS.items():
        alone, t_alone = resolve(uv, packages)
        plugin = f"hf_megadocs[{extras}] @ {ROOT.as_uri()}"
        added, t_added = resolve(uv, [*packages, plugin])
        for label, pins, seconds in (("alone", alone, t_alone), ("+ hf_megadocs", added, t_added)):
            shown = " | ".join(pins.get(name, "–") for name in SHOWN)
            print(f"| {stack} | {label} | {shown} | {seconds:.1f} s |")
        changed = {n: (v, added[n]) for n, v in alone.items() if n in added and added[n] != v}
        removed = sorted(set(alone) - set(added))
        notes.append(
            f"- {stack}: {len(alone)} packages alone, {len(added)} with the plugin; "
            f"changed by the plugin: {changed or 'none'}; removed: {removed or 'none'}."
        )
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
