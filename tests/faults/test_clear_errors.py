"""Clear errors where a traceback escaped (issue 27): a generator that cannot be found, a
full disk while generating or saving a checkpoint.

Before: ``--backend.generator ./no/such/folder`` failed with transformers' raw ``OSError``
calling the missing folder a malformed repo id, and an uncached Hub id under
``HF_HUB_OFFLINE=1`` with a connection failure; a full disk ended ``generate`` in a bare
``[Errno 28]`` traceback (no store path, no word on resuming) and training in torch's
"unexpected pos 270400 vs 270292". The full disk is simulated in-process: the write
raises ``OSError(ENOSPC)`` or torch's ``RuntimeError``, as it does on a full file system.
"""

from __future__ import annotations

import errno
import json
import subprocess
from pathlib import Path

import pytest

import hf_megadocs  # noqa: F401  (registers the builder)
from hf_megadocs.cli import main as cli_main
from hf_megadocs.disk_full import DiskFullError
from hf_megadocs.generation.generator_check import GeneratorNotFoundError, check_generator
from hf_megadocs.generation.store import GenerationStore
from hf_megadocs.generation.store_writer import StoreWriter
from hf_megadocs.training.checkpoint import save_checkpoint
from tests.faults.helpers import ENV, HF_MEGADOCS, lee_text_file, tiny_train_flags

DOCS = [
    {"id": f"d{i}", "text": f"Document {i} is about rivers, bridges and the town of {i}. " * 6}
    for i in range(12)
]
TORCH_FULL = "[enforce fail at inline_container.cc:664] . unexpected pos 270400 vs 270292"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(doc) + "\n" for doc in DOCS))
    return path


def _generate_cli(tmp_path: Path, source: Path, generator: str) -> subprocess.CompletedProcess:
    """``hf-megadocs generate`` with the transformers backend, offline, in ``tmp_path``."""
    env = {**ENV, "HF_HOME": str(tmp_path / "hf"), "HF_MEGADOCS_CACHE": str(tmp_path / "mc")}
    return subprocess.run(
        [HF_MEGADOCS, "generate", "--backend.backend", "transformers", "--backend.generator",
         generator, "--source.source", str(source), "--source.id_column", "id",
         "--store_dir", str(tmp_path / "store")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    (line,) = [x for x in done.stderr.splitlines() if "error:" in x]
    return line


def test_a_missing_local_generator_folder_is_named(tmp_path, source):
    line = _one_line_error(_generate_cli(tmp_path, source, "./missing"))
    assert f"no such folder: {tmp_path / 'missing'}" in line
    assert "Repo id must be" not in line


def test_an_uncached_hub_generator_offline_says_how_to_get_it(tmp_path, source):
    line = _one_line_error(_generate_cli(tmp_path, source, "some-org/not-cached"))
    assert "'some-org/not-cached' is not in the local Hugging Face cache" in line
    assert "HF_HUB_OFFLINE=1 is set" in line and "`hf download some-org/not-cached`" in line


def test_a_cached_hub_generator_passes_and_load_dataset_names_a_missing_folder(
    tmp_path, monkeypatch
):
    import datasets
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo = cache / "models--some-org--cached"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("a" * 40) / "config.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    check_generator("some-org/cached")  # cached: loadable offline, no error
    with pytest.raises(GeneratorNotFoundError, match="not in the local Hugging Face cache"):
        check_generator("some-org/other")

    monkeypatch.chdir(tmp_path)
    with pytest.raises(GeneratorNotFoundError) as raised:
        datasets.load_dataset(
            "hf_megadocs", "stitched_g2", backend="transformers", generator="./missing",
            store_dir=str(tmp_path / "store"), cache_dir=str(tmp_path / "datasets"),
            max_docs=4,
        )  # fmt: skip
    assert f"no such folder: {tmp_path / 'missing'}" in str(raised.value)


def test_a_full_disk_while_generating_names_the_store_and_a_rerun_resumes(
    tmp_path, source, monkeypatch, capsys
):
    store = tmp_path / "store"
    args = ["generate", "--backend.backend", "dummy", "--source.source", str(source),
            "--source.id_column", "id", "--store_dir", str(store), "--batch_size", "4",
            "--num_samples", "2", "--split.validation_fraction", "0"]  # fmt: skip
    append = StoreWriter.append
    batches = []

    def fills_up(self: StoreWriter, generations: list) -> None:
        batches.append(len(generations))
        if len(batches) > 1:  # the first batch fits, the second does not
            raise OSError(errno.ENOSPC, "No space left on device")
        append(self, generations)

    monkeypatch.setattr(StoreWriter, "append", fills_up)
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if "error:" in x]
    assert f"while writing the generation store {store}" in line
    assert "Nothing already stored is lost" in line and "rerun the same command" in line
    kept = len(GenerationStore(store).keys())
    assert kept == batches[0] > 0

    monkeypatch.setattr(StoreWriter, "append", append)
    assert cli_main(args) == 0  # the rerun resumes after what was stored
    assert f"| cached (already in store) | {kept} |" in capsys.readouterr().out
    assert len(GenerationStore(store).keys()) == 2 * len(DOCS)


def test_a_full_disk_while_training_builds_its_corpus_names_the_store(tmp_path, monkeypatch):
    from hf_megadocs.training.data.streams import load_stream

    def full(self: StoreWriter, generations: list) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(StoreWriter, "append", full)
    store, cache = tmp_path / "store", tmp_path / "datasets"
    kwargs = {"backend": "dummy", "max_docs": 8, "max_new_tokens": 8, "store_dir": str(store),
              "cache_dir": str(cache)}  # fmt: skip
    with pytest.raises(DiskFullError) as raised:
        load_stream("stitched_g2", None, kwargs, "data.synthetic_corpus")
    message = str(raised.value)
    assert f"the generation store {store}" in message  # raised where the store is filled
    assert "Nothing already stored is lost" in message and "rerun the same command" in message


def test_any_command_reports_a_raw_full_disk_in_one_line(monkeypatch, capsys):
    import hf_megadocs.generation.cli as generate_cli

    def full(argv: list[str]) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", "/data/cache/part-0.arrow")

    monkeypatch.setattr(generate_cli, "main", full)
    assert cli_main(["generate"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "while writing /data/cache/part-0.arrow" in err
    assert "rerun the same command" in err


class _Accelerator:
    """What ``save_checkpoint`` uses of an Accelerator; ``save_state`` fails with ``error``."""

    is_main_process = True

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def save_state(self, folder: str) -> None:
        Path(folder).mkdir(parents=True)
        (Path(folder) / "model.safetensors").write_bytes(b"\0" * 8)  # partly written
        raise self.error

    def wait_for_everyone(self) -> None:
        pass


@pytest.mark.parametrize(
    "error", [OSError(errno.ENOSPC, "No space left on device"), RuntimeError(TORCH_FULL)]
)
def test_a_full_disk_while_saving_a_checkpoint_names_it_and_keeps_the_previous(tmp_path, error):
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "step_2").mkdir(parents=True)
    (checkpoints / "step_2" / "trainer_state.json").write_text('{"step": 2}')
    (checkpoints / "latest").write_text("step_2")
    with pytest.raises(DiskFullError) as raised:
        save_checkpoint(_Accelerator(error), tmp_path, {"step": 4}, {})
    message = str(raised.value)
    assert f"while writing checkpoint {checkpoints / 'step_4'}" in message
    assert f"previous checkpoint {checkpoints / 'step_2'} is intact" in message
    assert "--resume_from_checkpoint latest" in message
    assert (checkpoints / "latest").read_text() == "step_2"


def test_a_non_disk_error_while_saving_passes_through(tmp_path):
    with pytest.raises(RuntimeError, match="CUDA error"):
        save_checkpoint(_Accelerator(RuntimeError("CUDA error")), tmp_path, {"step": 4}, {})


def test_training_on_a_full_disk_exits_with_one_line_and_resumes(tmp_path, monkeypatch, capsys):
    from accelerate import Accelerator

    from hf_megadocs.train import main as train_main

    out = tmp_path / "run"
    flags = tiny_train_flags(lee_text_file(tmp_path), out, "--max_steps", "2", "--save_every", "1")
    save_state = Accelerator.save_state

    def full_at_step_2(self: Accelerator, output_dir: str, **kwargs: object) -> None:
        if output_dir.endswith("step_2"):
            Path(output_dir).mkdir(parents=True)
            raise RuntimeError(TORCH_FULL)
        save_state(self, output_dir, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", full_at_step_2)
    assert train_main(flags) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"while writing checkpoint {out / 'checkpoints' / 'step_2'}" in err
    assert "step_1 is intact" in err
    assert (out / "checkpoints" / "latest").read_text() == "step_1"

    monkeypatch.setattr(Accelerator, "save_state", save_state)
    assert train_main([*flags, "--resume_from_checkpoint", "latest"]) == 0
    assert f"resumed from {out / 'checkpoints' / 'step_1'}" in capsys.readouterr().out
    assert (out / "checkpoints" / "latest").read_text() == "step_2"
