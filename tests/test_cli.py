"""The hf-megadocs dispatcher (hf_megadocs.cli): every subcommand resolves and has help."""

from __future__ import annotations

import importlib
import re

import pytest

from hf_megadocs.cli import SUBCOMMANDS, main


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_documents_every_option(name, capsys):
    module = importlib.import_module(SUBCOMMANDS[name][0])
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out.split("\n\n", 1)[1]  # past the usage line
    blocks = re.split(r"\n(?=  --)", text)
    documented = [b for b in blocks if b.startswith("  --") and " CONFIG" not in b.split("\n")[0]]
    fields = [b for b in documented if not b.startswith(("  --config", "  --print_config"))]
    assert fields, text
    # Every field says what it does, and jsonargparse adds its type and default.
    for block in fields:
        assert ("default:" in block or "required" in block) and len(
            block.split(None, 2)[-1]
        ) > 20, block


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["nope"]) == 2
    assert "unknown command" in capsys.readouterr().err
    assert main([]) == 0
