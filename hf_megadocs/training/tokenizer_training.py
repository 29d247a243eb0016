"""A small tokenizer trained on the run's real training documents only.

On a CPU the compute of a tiny model goes to a 49k-row output layer when it uses the
generator's tokenizer; a byte-level BPE of a few thousand tokens, trained with HF
``tokenizers`` on the real *training* split (never validation documents, never synthetic
text), puts it into the transformer instead. The tokenizer is saved in
``<output_dir>/tokenizer`` and reused from there on resume, so token ids never change
within a run; ``config.json`` records its path and vocabulary size. It is written to a
temporary folder and renamed into place, so a full disk or a kill never leaves a half
tokenizer there; a damaged one left by older code is named and trained again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from accelerate import Accelerator

    from hf_megadocs.training.config import TrainConfig

logger = logging.getLogger(__name__)

END_OF_TEXT = "<|endoftext|>"
"""The one special token: EOS after every document, and BOS/padding."""


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path) -> Any:
    """Train a byte-level BPE of ``vocab_size`` tokens on ``texts`` and save it to ``out_dir``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if vocab_size < len(byte_level.alphabet()) + 1:
        raise ValueError(
            f"model.train_tokenizer_vocab={vocab_size} is below the 256 bytes + 1 special "
            "token a byte-level BPE needs; use e.g. 4096."
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=byte_level.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=END_OF_TEXT,
        bos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
    )
    fast.save_pretrained(out_dir)
    return fast


def run_tokenizer(config: TrainConfig, accelerator: Accelerator) -> Any:
    """This run's trained tokenizer: trained once by the main process, loaded by every rank."""
    from transformers import AutoTokenizer

    folder = Path(config.output_dir) / "tokenizer"
    vocab_size = config.model.train_tokenizer_vocab
    with accelerator.main_process_first():
        if accelerator.is_main_process:
            train_on_real_split(config, vocab_size, folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if len(tokenizer) != vocab_size:
        logger.warning(
            "%s holds %d tokens, not model.train_tokenizer_vocab=%d: it was trained by an "
            "earlier run of this folder and is kept, so token ids stay the same",
            folder,
            len(tokenizer),
            vocab_size,
        )
    return tokenizer


def tokenizer_damage(folder: Path) -> str | None:
    """What is wrong with the tokenizer saved in ``folder`` (naming the file), or None.

    A missing ``tokenizer.json`` or any JSON file of the folder that does not parse (a
    truncated write) counts as damage.
    """
    path = folder / "tokenizer.json"
    if not path.is_file():
        return f"{path} is missing"
    for file in sorted(folder.glob("*.json")):
        try:
            json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:  # JSONDecodeError, UnicodeDecodeError
            return f"{file} is damaged ({error})"
    return None


def train_on_real_split(config: TrainConfig, vocab_size: int, folder: Path) -> None:
    """Train a BPE on the real training split of ``config`` into ``folder``, unless an
    intact one is already there (kept, so token ids never change); a damaged one is named
    in a WARNING and replaced. Written to a temporary folder, then renamed into place."""
    from hf_megadocs.training.data.streams import real_training_split

    if folder.exists():
        damage = tokenizer_damage(folder)
        if damage is None:
            return
        logger.warning("%s: training the tokenizer in %s again", damage, folder)
    _, train, _, _ = real_training_split(config)
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by a run killed while writing it
    train_bpe_tokenizer(text_batches(train, config.data.text_column), vocab_size, partial)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    logger.info(
        "trained a %d-token BPE tokenizer on %d real training documents -> %s",
        vocab_size,
        len(train),
        folder,
    )


def text_batches(dataset: Any, column: str, batch_size: int = 1000) -> Iterator[list[str]]:
    """The ``column`` texts of ``dataset`` in lists of ``batch_size`` (what BPE training reads)."""
    for start in range(0, len(dataset), batch_size):
        yield dataset[start : start + batch_size][column]


__all__ = ["END_OF_TEXT", "run_tokenizer", "text_batches", "tokenizer_damage",
           "train_bpe_tokenizer", "train_on_real_split"]  # fmt: skip
