"""Optional dependencies (hf_megadocs.extras): a missing one names the ``pip install`` line
of its extra, and the core (package, builder, trainer) neither imports nor needs them."""

from __future__ import annotations

import json
import re
import runpy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hf_megadocs.extras import EXTRAS, MissingExtraError, require

OPTIONAL = tuple(name for names in EXTRAS.values() for name in names)
ROOT = Path(__file__).resolve().parents[1]

ABSENT = f"""
import sys
for name in {OPTIONAL!r}:
    sys.modules[name] = None  # import raises ModuleNotFoundError, find_spec returns None
"""
"""Prelude of a subprocess in which none of the optional packages is installed."""


def _absent(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make ``name`` look uninstalled for the rest of the test."""
    for loaded in [m for m in sys.modules if m.startswith(f"{name}.")]:
        monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.setitem(sys.modules, name, None)


def _plots() -> object:
    from hf_megadocs.analysis import plots

    return plots._pyplot()


def _fit() -> object:
    from hf_megadocs.analysis.fit import fit_power_law

    return fit_power_law([1e6, 2e6, 4e6, 8e6], [4.0, 3.8, 3.7, 3.65])


def _expansion() -> object:
    from hf_megadocs.analysis.efficiency import expansion

    return expansion(0.95, 3)


def _lack_of_fit() -> object:
    from hf_megadocs.analysis.efficiency import lack_of_fit

    return lack_of_fit([], [])


def _metric() -> object:
    from hf_megadocs.analysis.evaluate_modules import module_path

    return runpy.run_path(str(Path(module_path("megadocs_loss")) / "megadocs_loss.py"))


def _corpus() -> object:
    from hf_megadocs.generation.embedded import embedded_corpus_path

    return embedded_corpus_path()


def _convert(tmp_path: Path) -> object:
    from hf_megadocs.generation.embedded import _convert

    return _convert(tmp_path / "model.gguf", tmp_path / "out")


def _tracker(tmp_path: Path, log_with: str = "tensorboard") -> object:
    from hf_megadocs.training.accelerator import make_accelerator
    from hf_megadocs.training.presets import load_config

    flags = ["--preset", "tiny_cpu", "--log_with", log_with, "--output_dir", str(tmp_path)]
    return make_accelerator(load_config(overrides=flags))


SITES: list[tuple[str, str, Callable[[Path], object]]] = [
    ("matplotlib", "analysis", lambda _: _plots()),
    ("scipy", "analysis", lambda _: _fit()),
    ("scipy", "analysis", lambda _: _expansion()),
    ("scipy", "analysis", lambda _: _lack_of_fit()),
    ("evaluate", "analysis", lambda _: _metric()),
    ("gensim", "embedded", lambda _: _corpus()),
    ("gguf", "embedded", _convert),
    ("tensorboard", "tensorboard", _tracker),
]


@pytest.mark.parametrize(
    ("module", "extra", "use"), SITES, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(SITES)]
)
def test_a_missing_package_names_its_extra(module, extra, use, monkeypatch, tmp_path):
    _absent(monkeypatch, module)
    with pytest.raises(MissingExtraError) as caught:
        use(tmp_path)
    message = str(caught.value)
    assert f"needs {module}, which is not installed" in message
    assert f"pip install 'hf_megadocs[{extra}]'" in message
    assert isinstance(caught.value, ImportError) and caught.value.extra == extra


def test_the_extras_match_the_packages_setup_cfg_lists():
    import configparser
    import re

    setup = configparser.ConfigParser()
    setup.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    extras = setup["options.extras_require"]
    for extra, modules in EXTRAS.items():
        listed = {re.split(r"[<>=!~; ]", line.strip())[0] for line in extras[extra].split("\n")}
        assert set(modules) <= listed, (extra, modules, listed)
    core = setup["options"]["install_requires"]
    assert not any(m in core for modules in EXTRAS.values() for m in modules)


def test_require_returns_the_module_when_installed():
    pytest.importorskip("scipy")
    import scipy.optimize

    assert require("scipy.optimize", "analysis", "Fitting") is scipy.optimize


def test_require_refuses_a_package_its_extra_does_not_install():
    with pytest.raises(ValueError, match="'numpy' is not in the 'analysis' extra"):
        require("numpy", "analysis", "Anything")


def test_a_broken_dependency_inside_an_installed_package_is_not_called_missing(
    monkeypatch, tmp_path
):
    package = tmp_path / "fakeplot"
    package.mkdir()
    (package / "__init__.py").write_text("import not_a_real_dependency_of_fakeplot\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(EXTRAS, "analysis", (*EXTRAS["analysis"], "fakeplot"))
    with pytest.raises(ModuleNotFoundError) as caught:
        require("fakeplot", "analysis", "Fake plots")
    assert not isinstance(caught.value, MissingExtraError)
    assert caught.value.name == "not_a_real_dependency_of_fakeplot"


def test_the_tracker_extra_is_only_needed_for_tensorboard_logging(monkeypatch, tmp_path):
    _absent(monkeypatch, "tensorboard")
    accelerator = _tracker(tmp_path, log_with="none")
    accelerator.end_training()
    with pytest.raises(MissingExtraError, match=re.escape("or train without it: --log_with none")):
        _tracker(tmp_path)


def test_the_cli_prints_a_missing_extra_as_one_line(monkeypatch, capsys):
    from hf_megadocs import cli
    from hf_megadocs.analysis import report

    _absent(monkeypatch, "matplotlib")
    monkeypatch.setattr(report, "main", lambda argv: _plots())
    assert cli.main(["report"]) == 2
    expected = (
        "hf-megadocs report: error: Report figures needs matplotlib, which is not installed. "
        "Install it with: pip install 'hf_megadocs[analysis]'"
    )
    assert capsys.readouterr().err.splitlines() == [expected]


def test_importing_the_core_imports_no_optional_package():
    code = (
        "import sys\n"
        "import hf_megadocs, hf_megadocs.corpora, hf_megadocs.training, hf_megadocs.cli\n"
        "import hf_megadocs.corpora.builder, hf_megadocs.training.loop, hf_megadocs.analysis\n"
        "import hf_megadocs.generation.sources, hf_megadocs.generation.embedded\n"
        f"print([m for m in {OPTIONAL!r} if m in sys.modules])\n"
    )
    done = _run_python(code, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "[]"


def _run_python(code: str, *args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    """``python -c code args...`` from the checkout, its output captured."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


CORE_RUN = """
import json, sys
import datasets
import hf_megadocs
from hf_megadocs.training import load_config, train

root, tokenizer = sys.argv[1], sys.argv[2]
where = {"cache_dir": root + "/hf_cache", "store_dir": root + "/store"}
fast = {"backend": "dummy", "max_docs": 12, "max_new_tokens": 16, "validation_fraction": 0.25}
source = root + "/docs.jsonl"
real = datasets.load_dataset("hf_megadocs", "real", source=source, max_docs=12, **where)
stitched = datasets.load_dataset("hf_megadocs", "stitched_g2", source=source, **fast, **where)
flags = [
    "--preset", "tiny_cpu", "--model.tokenizer", tokenizer, "--data.real_path", source,
    "--data.synthetic_corpus", "null", "--mix.synthetic_share", "0", "--data.seq_len", "32",
    "--model.hidden_size", "16", "--model.intermediate_size", "32",
    "--model.num_attention_heads", "2", "--mix.global_batch_size", "2",
    "--micro_batch_size", "2", "--data.validation_docs", "4", "--eval.max_docs", "2",
    "--eval.long_context_docs", "0",
    "--eval_every", "0", "--save_every", "0", "--max_steps", "2", "--log_with", "none",
    "--output_dir", root + "/run",
]
summary = train(load_config(overrides=flags))
rows = {"real": real["train"].num_rows, "stitched": stitched["train"].num_rows}
print(json.dumps({**rows, "steps": summary["steps"]}))
"""


def test_the_builder_and_the_trainer_run_without_any_optional_package(tmp_path):
    from hf_megadocs.generation.embedded import embedded_generator_path

    tokenizer = embedded_generator_path()  # converting the GGUF needs gguf: do it here
    words = ["river", "valley", "farmers", "cattle", "bridge", "city", "glacier", "music"]
    with open(tmp_path / "docs.jsonl", "w") as out:
        for i in range(16):
            text = " ".join(words[(i + j) % len(words)] for j in range(60))
            out.write(json.dumps({"text": f"Document {i}. {text}."}) + "\n")
    code = ABSENT + CORE_RUN
    done = _run_python(code, str(tmp_path), tokenizer, timeout=600)
    assert done.returncode == 0, done.stderr[-5000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["real"] > 0 and result["stitched"] > 0 and result["steps"] == 2
