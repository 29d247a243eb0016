"""Make ``datasets.load_dataset("hf_megadocs", ...)`` find our builder (``import hf_megadocs``).

datasets 5.x dropped loading scripts. What remains is its table of packaged modules,
``datasets.packaged_modules._PACKAGED_DATASETS_MODULES`` (name → (module path, code
hash)); ``dataset_module_factory`` looks a name up there before anything else, and the
code hash becomes part of the cache path. We add ``"hf_megadocs"`` to it.

One more step is needed: for a packaged name, ``PackagedDatasetModuleFactory`` scans the
*current directory* for data files when none are given. That raises ``EmptyDatasetError``
in an empty directory and otherwise hands our builder whatever files happen to be there
(changing the cache fingerprint with the working directory). :func:`register` therefore
wraps that factory so that, for ``"hf_megadocs"`` only, it returns our module without
scanning; every other name goes through the original code.

Both are private API, tested with datasets 5.2.x (:data:`SUPPORTED_DATASETS`). If their
shape changes, :func:`register` raises :class:`RegistrationError` naming the supported
versions; :func:`hf_megadocs.load_corpus` keeps working without the registration.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DATASET_NAME = "hf_megadocs"
"""The name users pass to ``load_dataset``."""
BUILDER_MODULE = "hf_megadocs.corpora.builder"
SUPPORTED_DATASETS = ">=5.2,<5.3"
"""The datasets versions this registration is tested with."""
_ROW_SHAPING_FILES = (
    "corpora/builder.py",
    "corpora/config.py",
    "corpora/plan.py",
    "corpora/rows.py",
    "corpora/assembly.py",
    "corpora/names.py",
    "generation/splits.py",
)
_FACTORY_PARAMS = ("name", "data_dir", "data_files", "download_config", "download_mode")


class RegistrationError(RuntimeError):
    """The installed datasets no longer has the internals the registration relies on."""


def builder_module_hash() -> str:
    """sha256 of the code that shapes the rows (builder, config, plan, rows, assembly, names,
    splits).

    Read from the files, without importing them: a code change gives a new cache path.
    """
    digest = hashlib.sha256()
    package = Path(__file__).parent.parent
    for name in _ROW_SHAPING_FILES:
        digest.update(name.encode())
        digest.update((package / name).read_bytes())
    return digest.hexdigest()


def _fail(detail: str, version: str) -> RegistrationError:
    return RegistrationError(
        f"Cannot register 'hf_megadocs' with datasets {version}: {detail}. The registration "
        f"uses datasets internals tested with datasets{SUPPORTED_DATASETS}; install "
        f"'datasets{SUPPORTED_DATASETS}', or call hf_megadocs.load_corpus(name, **knobs), "
        "which builds the same corpora without the registration."
    )


def _check_internals() -> tuple[Any, Any]:
    """(the packaged-modules table, datasets.load), after checking their shape."""
    import datasets
    import datasets.load as load
    import datasets.packaged_modules as packaged

    version = datasets.__version__
    table = getattr(packaged, "_PACKAGED_DATASETS_MODULES", None)
    if not isinstance(table, dict) or not all(
        isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, str) for x in v)
        for v in table.values()
    ):
        raise _fail(
            "datasets.packaged_modules._PACKAGED_DATASETS_MODULES is gone or changed shape", version
        )
    if getattr(load, "_PACKAGED_DATASETS_MODULES", None) is not table:
        raise _fail("datasets.load no longer reads _PACKAGED_DATASETS_MODULES", version)
    factory = getattr(load, "PackagedDatasetModuleFactory", None)
    if factory is None or not hasattr(factory, "get_module") or not hasattr(load, "DatasetModule"):
        raise _fail("datasets.load.PackagedDatasetModuleFactory / DatasetModule are gone", version)
    params = tuple(
        inspect.signature(getattr(factory, "__wrapped_factory__", factory).__init__).parameters
    )
    if params[1:] != _FACTORY_PARAMS:
        raise _fail(
            f"PackagedDatasetModuleFactory takes {params[1:]}, expected {_FACTORY_PARAMS}", version
        )
    major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if major_minor != (5, 2):
        logger.warning(
            "hf_megadocs registers with datasets %s; it is tested with datasets%s.",
            version,
            SUPPORTED_DATASETS,
        )
    return table, load


def _wrap_factory(original: type) -> type:
    """A PackagedDatasetModuleFactory that serves 'hf_megadocs' without scanning the cwd."""
    from datasets.data_files import DataFilesDict

    class MegadocsAwarePackagedFactory(original):  # type: ignore[misc,valid-type]
        __wrapped_factory__ = original

        def __init__(
            self, name, data_dir=None, data_files=None, download_config=None, download_mode=None
        ):
            self._megadocs = name == DATASET_NAME and data_files is None and data_dir is None
            if self._megadocs:  # no cwd scan, no download-count ping for a local builder
                self.name, self.data_dir, self.data_files = name, None, None
                self.download_config, self.download_mode = download_config, download_mode
                return
            super().__init__(name, data_dir, data_files, download_config, download_mode)

        def get_module(self):
            if not self._megadocs:
                return super().get_module()
            import datasets.load as load

            module_path, module_hash = load._PACKAGED_DATASETS_MODULES[self.name]
            # An empty (not None) DataFilesDict: load_dataset_builder asks packaged modules
            # without data files for some; our builder reads the `source` knob instead.
            return load.DatasetModule(
                module_path, module_hash, {"data_files": DataFilesDict(), "dataset_name": self.name}
            )

    MegadocsAwarePackagedFactory.__name__ = original.__name__
    MegadocsAwarePackagedFactory.__qualname__ = original.__qualname__
    return MegadocsAwarePackagedFactory


def register() -> None:
    """Register the builder so ``load_dataset("hf_megadocs", name, **knobs)`` works.

    Idempotent. Raises :class:`RegistrationError` when datasets' internals moved.
    """
    table, load = _check_internals()
    table[DATASET_NAME] = (BUILDER_MODULE, builder_module_hash())
    if not hasattr(load.PackagedDatasetModuleFactory, "__wrapped_factory__"):
        load.PackagedDatasetModuleFactory = _wrap_factory(load.PackagedDatasetModuleFactory)


def is_registered() -> bool:
    """Whether ``load_dataset("hf_megadocs", ...)`` currently resolves to our builder."""
    import datasets.load as load
    import datasets.packaged_modules as packaged

    return getattr(packaged, "_PACKAGED_DATASETS_MODULES", {}).get(DATASET_NAME, (None,))[
        0
    ] == BUILDER_MODULE and hasattr(load.PackagedDatasetModuleFactory, "__wrapped_factory__")


def unregister() -> None:
    """Undo :func:`register` (tests; also restores datasets' own factory)."""
    import datasets.load as load
    import datasets.packaged_modules as packaged

    packaged._PACKAGED_DATASETS_MODULES.pop(DATASET_NAME, None)
    original = getattr(load.PackagedDatasetModuleFactory, "__wrapped_factory__", None)
    if original is not None:
        load.PackagedDatasetModuleFactory = original


__all__ = [
    "DATASET_NAME",
    "SUPPORTED_DATASETS",
    "RegistrationError",
    "builder_module_hash",
    "is_registered",
    "register",
    "unregister",
]
