"""Training across nodes, on one machine: each "node" is its own process tree on loopback.

Two ``accelerate launch --num_machines 2 --machine_rank 0|1`` on 127.0.0.1 (gloo, CPU)
stand in for two nodes. A node-local disk is a folder only that node's processes are
given (their own ``HF_DATASETS_CACHE``, or their own folder for a path); a shared file
system is one folder given to both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.training.test_loop import ENV, RECIPE, ROOT, _flags, _records, corpus  # noqa: F401

PACKED = "packed {} units"  # the packer's log line when it packs (not when it loads)


def _launch_nodes(argv: list[str], caches: list[Path], logs: list[Path]) -> list[subprocess.Popen]:
    """Start two one-process "nodes" of one run; node ``i`` uses ``caches[i]`` as its
    datasets cache and writes its output to ``logs[i]``."""
    port = free_port()
    nodes = []
    for rank, (cache, log) in enumerate(zip(caches, logs)):
        command = [
            str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu",
            "--num_machines", "2", "--machine_rank", str(rank), "--num_processes", "2",
            "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
            "--mixed_precision", "no", "--dynamo_backend", "no", str(RECIPE), *argv,
        ]  # fmt: skip
        with open(log, "w") as out:
            nodes.append(subprocess.Popen(
                command, env={**ENV, "HF_DATASETS_CACHE": str(cache)}, cwd=ROOT,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            ))  # fmt: skip
    return nodes


def _kill_nodes(nodes: list[subprocess.Popen]) -> None:
    """SIGKILL every process of both nodes (torchrun starts its workers in new sessions)."""
    import psutil

    for node in nodes:
        try:
            workers = [p.pid for p in psutil.Process(node.pid).children(recursive=True)]
        except psutil.NoSuchProcess:  # ended and reaped: its workers ended before it
            workers = []
        for pid in [node.pid, *workers] if node.poll() is None else workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        node.wait()


def _packed_folders(cache: Path) -> list[Path]:
    return sorted(cache.glob("**/hf_megadocs_packed/packed-*"))


@pytest.mark.slow
def test_two_nodes_train_checkpoint_die_and_resume_exactly(corpus, tmp_path):  # noqa: F811
    """Two loopback nodes train with node-local data caches, are killed after a checkpoint
    and resume with a cache they share; the losses equal one uninterrupted run's, and the
    packed data was prepared once per node (local caches) and once in all (shared)."""
    from hf_megadocs.training import load_config, train

    reference, run = tmp_path / "reference", tmp_path / "run"
    common = ("--save_every", "3", "--log_every", "2")
    # The uninterrupted run: one process, two micro-batches per step (the same global batch
    # of 4 as two nodes × micro-batch 2), in this process.
    train(load_config(overrides=_flags(corpus, reference, "--max_steps", "6", *common)))

    # Nodes with their own caches, killed once step 3's checkpoint is complete (no step cap,
    # so they cannot finish first).
    local = [tmp_path / "node0-cache", tmp_path / "node1-cache"]
    first_logs = [tmp_path / "first-node0.log", tmp_path / "first-node1.log"]
    nodes = _launch_nodes(_flags(corpus, run, *common), local, first_logs)
    pointer = run / "checkpoints" / "latest"
    deadline = time.monotonic() + 400
    while not pointer.exists() and time.monotonic() < deadline:
        if any(node.poll() is not None for node in nodes):
            break
        time.sleep(0.05)
    alive = [node.poll() is None for node in nodes]
    _kill_nodes(nodes)
    logs = "\n".join(log.read_text()[-3000:] for log in first_logs)
    assert all(alive) and pointer.exists(), logs
    for cache, log in zip(local, first_logs):  # each node packed both streams on its own disk
        assert len(_packed_folders(cache)) == 2, cache
        assert log.read_text().count("INFO hf_megadocs.training.data.packing: packed ") == 2

    # Resumed by both nodes on one shared cache: rank 0 packs, node 1 loads what it packed.
    shared = tmp_path / "shared-cache"
    second_logs = [tmp_path / "second-node0.log", tmp_path / "second-node1.log"]
    argv = _flags(corpus, run, "--max_steps", "6", "--resume_from_checkpoint", "latest", *common)
    nodes = _launch_nodes(argv, [shared, shared], second_logs)
    try:
        codes = [node.wait(timeout=400) for node in nodes]
    finally:
        _kill_nodes(nodes)
    logs = "\n".join(log.read_text()[-3000:] for log in second_logs)
    assert codes == [0, 0], logs
    node0, node1 = (log.read_text() for log in second_logs)
    assert "resumed from" in node0 and "at step 3" in node0
    assert len(_packed_folders(shared)) == 2
    assert node0.count("data.packing: packed ") == 2 and "data.packing: packed " not in node1
    assert node1.count("loading packed sequences from " + str(shared)) == 2

    ref, got = _records(reference, "train"), _records(run, "train")
    assert [r["step"] for r in got] == [2, 4, 6] == [r["step"] for r in ref]
    for a, b in zip(ref, got):
        for key in ("tokens", "real_tokens_seen", "synthetic_tokens_seen"):
            assert a[key] == b[key], (a["step"], key)
        # One process accumulating two micro-batches vs two processes all-reducing: the
        # same sums in another order, so equal to float rounding.
        for key in ("loss", "loss_real", "loss_synthetic", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (a["step"], key)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["steps"] == 6
    assert summary["iid_loss"] == pytest.approx(_records(reference, "eval")[-1]["iid_loss"], 1e-4)


WORKER = r"""
import json, sys, time
from pathlib import Path
from accelerate import PartialState
from hf_megadocs.training.nodes import check_shared_folder, main_process_first_per_node

state = PartialState(cpu=True)
node_dir, shared_dir, log = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
for cache in (node_dir, shared_dir):
    with main_process_first_per_node(state):
        marker = cache / "prepared"
        if not marker.exists():  # what the packer does: reuse what is there, else build it
            time.sleep(0.5)  # a slow build: two processes building at once would overlap
            with open(log, "a") as out:
                out.write(json.dumps({"cache": str(cache), "rank": state.process_index}) + "\n")
            cache.mkdir(parents=True, exist_ok=True)
            marker.write_text("done")
results = {}
for name, folder in (("node", node_dir / "run"), ("shared", shared_dir / "run")):
    try:
        check_shared_folder(state, folder)
        results[name] = "ok"
    except ValueError as error:
        results[name] = str(error)
print("RESULT " + json.dumps({"rank": state.process_index, **results}), flush=True)
state.destroy_process_group()
"""


@pytest.mark.slow
def test_data_is_prepared_once_per_node_and_a_node_local_run_folder_is_refused(tmp_path):
    """Four real gloo processes, two per "node": with node-local caches the data is built
    once on each node (not by both processes of node 1 at once); with a shared cache once in
    all; a run folder that is not the same folder on both nodes is refused on every rank."""
    port, log = free_port(), tmp_path / "preparers.jsonl"
    shared = tmp_path / "shared"
    workers = []
    for rank in range(4):
        node = rank // 2
        env = {
            **ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
            "WORLD_SIZE": "4", "LOCAL_RANK": str(rank % 2), "LOCAL_WORLD_SIZE": "2",
            "GROUP_RANK": str(node),
        }  # fmt: skip
        argv = [sys.executable, "-c", WORKER, str(tmp_path / f"node{node}"), str(shared), str(log)]
        workers.append(subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True))  # fmt: skip
    outputs = [worker.communicate(timeout=400)[0] for worker in workers]
    assert [w.returncode for w in workers] == [0] * 4, "\n".join(o[-2000:] for o in outputs)

    preparers = [json.loads(line) for line in log.read_text().splitlines()]
    by_cache = {c: sorted(p["rank"] for p in preparers if p["cache"] == c) for c in
                (str(tmp_path / "node0"), str(tmp_path / "node1"), str(shared))}  # fmt: skip
    assert by_cache == {str(tmp_path / "node0"): [0], str(tmp_path / "node1"): [2],
                        str(shared): [0]}  # fmt: skip

    results = [json.loads(o.split("RESULT ", 1)[1].splitlines()[0]) for o in outputs]
    assert all(r["shared"] == "ok" for r in results)
    for result in results:  # node 1's processes cannot see node 0's folder
        assert "rank 2 on" in result["node"] and "rank 3 on" in result["node"], result
        assert "rank 0 on" not in result["node"] and "file system all nodes share" in result["node"]
    assert not (shared / "run" / ".shared-folder-check").exists()  # cleaned up
