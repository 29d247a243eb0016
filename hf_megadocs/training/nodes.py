"""What a run over several nodes needs beyond one: data prepared once per node, and a run
folder that every node sees.

Data (:func:`main_process_first_per_node`): the tokenized Arrow cache and the packed rows
live wherever the ``datasets`` cache is (``HF_DATASETS_CACHE``), node-local disk or a shared
file system. Global rank 0 prepares them first; then the first process of every other node
either finds them (shared cache) or prepares its node's copy (node-local cache); only then
do the remaining processes of each node read them. Accelerate's ``main_process_first``
would let every process of node 1, 2, ... prepare the data at once on node-local caches
(N copies of the work and of the memory, racing on the same files), and its
``local_main_process_first`` would let every node prepare at once on a shared cache.

Run folder (:func:`check_shared_folder`): checkpoints, the ``latest`` pointer, metrics and
the run lock are written once, by global rank 0, and read by every rank on a resume. A run
folder on node-local disk would let rank 0 resume while the other nodes silently start at
step 0, so a run of several processes checks that each one sees a file rank 0 just wrote.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from accelerate import Accelerator, PartialState

CHECK_FILE = ".shared-folder-check"
"""What :func:`check_shared_folder` writes in the run folder (and deletes again)."""


@contextmanager
def main_process_first_per_node(state: Accelerator | PartialState) -> Iterator[None]:
    """Run the body on global rank 0 first, then on the first process of every other node,
    then on every other process: data is prepared once per node on node-local caches and
    once in all on a shared one.

    Every process enters the same two barriers, so all must call it (a collective).
    """
    first = state.is_main_process
    node_first = state.is_local_main_process and not first
    if not first:
        state.wait_for_everyone()  # 1: rank 0 has prepared
        if not node_first:
            state.wait_for_everyone()  # 2: every node's first process has prepared
    yield
    if first:
        state.wait_for_everyone()
    if first or node_first:
        state.wait_for_everyone()


def check_shared_folder(state: Accelerator | PartialState, folder: str | Path) -> None:
    """Raise ValueError on every process unless all processes see ``folder`` as one folder.

    Rank 0 writes a fresh token into ``folder``; every process reads it back. A single
    process returns at once. A collective: every process must call it.
    """
    if state.num_processes < 2:
        return
    from accelerate.utils import broadcast_object_list, gather_object

    folder = Path(folder)
    path = folder / CHECK_FILE
    token = [secrets.token_hex(8) if state.is_main_process else None]
    broadcast_object_list(token)
    if state.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(token[0])
    state.wait_for_everyone()
    try:
        seen = path.read_text() if path.is_file() else None
    except OSError:
        seen = None
    views = gather_object([(state.process_index, os.uname().nodename, seen == token[0])])
    state.wait_for_everyone()
    if state.is_main_process:
        path.unlink(missing_ok=True)
    blind = [(rank, host) for rank, host, ok in views if not ok]
    if blind:
        who = ", ".join(f"rank {rank} on {host}" for rank, host in blind)
        raise ValueError(
            f"output_dir {folder} is not one folder for every process: {who} cannot see the "
            "file rank 0 just wrote there. Checkpoints and records are written once, by rank 0, "
            "and every process reads them on a resume, so output_dir must be on a file system "
            "all nodes share (not node-local disk such as /tmp); put it there, or pass the "
            "same absolute path on every node."
        )


__all__ = ["CHECK_FILE", "check_shared_folder", "main_process_first_per_node"]
