"""Packing invariants: no token lost or duplicated, unit contiguity, attention blocks."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import torch
from datasets import Dataset

from hf_megadocs.training.data.packing import IGNORE_INDEX, PackConfig, PackedSequences, pack
from hf_megadocs.training.data.tokenize import PAD_ROLE_ID

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_units(n_units: int = 60, seed: int = 0, max_docs: int = 4, max_doc_len: int = 50):
    """Tokenized units whose token ids are all distinct (so positions can be traced back)."""
    rng = np.random.default_rng(seed)
    rows = {"input_ids": [], "roles": [], "doc_starts": [], "num_tokens": []}
    next_id = 1
    for u in range(n_units):
        doc_lens = rng.integers(1, max_doc_len, size=rng.integers(1, max_docs + 1))
        n = int(doc_lens.sum())
        rows["input_ids"].append(list(range(next_id, next_id + n)))
        next_id += n
        rows["roles"].append([u % 6] * n)
        rows["doc_starts"].append((np.cumsum(doc_lens) - doc_lens).tolist())
        rows["num_tokens"].append(n)
    return Dataset.from_dict(rows)


@pytest.fixture(scope="module")
def units() -> Dataset:
    return make_units()


def flat_units(ds: Dataset) -> list[list[int]]:
    return ds["input_ids"]


@pytest.mark.parametrize("attention", ["cross_document", "megadoc", "document"])
@pytest.mark.parametrize("drop_last", [True, False])
def test_no_token_lost_or_duplicated(units, attention, drop_last):
    cfg = PackConfig(seq_len=37, attention=attention, drop_last=drop_last, seed=3)
    packed = pack(units, cfg)
    st = packed.stats
    n_in = sum(len(u) for u in flat_units(units))
    real = packed.input_ids[packed.roles != PAD_ROLE_ID]
    assert st.tokens == n_in
    assert st.packed_tokens == len(real) == n_in - st.dropped_tokens
    assert len(np.unique(real)) == len(real)  # no duplicate
    if drop_last:
        assert st.padding_tokens == 0 and 0 <= st.dropped_tokens < cfg.seq_len
        assert packed.input_ids.size == n_in - st.dropped_tokens
    else:
        assert st.dropped_tokens == 0 and 0 <= st.padding_tokens < cfg.seq_len
        assert np.count_nonzero(packed.roles == PAD_ROLE_ID) == st.padding_tokens
        assert set(real.tolist()) == set(range(1, n_in + 1))
    assert st.units == len(units) and st.sequences == len(packed)
    assert st.documents == sum(len(d) for d in units["doc_starts"])


def test_units_stay_contiguous_and_in_order(units):
    packed = pack(units, PackConfig(seq_len=29, drop_last=False))
    stream = packed.input_ids.reshape(-1)
    is_pad = packed.roles.reshape(-1) == PAD_ROLE_ID
    where = {int(t): i for i, t in enumerate(stream) if not is_pad[i]}
    starts = []
    for u in flat_units(units):
        pos = np.array([where[t] for t in u])
        assert np.all(np.diff(pos) == 1), "a unit's tokens must be consecutive and in order"
        starts.append(pos[0])
    # Units are shuffled as units: the order differs from the input order.
    assert not np.all(np.diff(starts) > 0)
    # Roles travel with their tokens.
    role_of = dict(zip(stream[~is_pad].tolist(), packed.roles.reshape(-1)[~is_pad].tolist()))
    for u, r in zip(flat_units(units), units["roles"]):
        assert [role_of[t] for t in u] == r


def test_long_unit_spans_consecutive_sequences():
    ds = Dataset.from_dict(
        {
            "input_ids": [list(range(1, 101)), [500, 501]],
            "roles": [[0] * 100, [1, 1]],
            "doc_starts": [[0], [0]],
            "num_tokens": [100, 2],
        }
    )
    packed = pack(ds, PackConfig(seq_len=16, drop_last=False, attention="megadoc"))
    stream = packed.input_ids.reshape(-1)
    i = int(np.flatnonzero(stream == 1)[0])
    assert stream[i : i + 100].tolist() == list(range(1, 101))
    # megadoc positions restart at each row start and at the unit start only.
    pos = packed.position_ids.reshape(-1)
    assert pos[i] == 0 and np.all(pos[i + 1 : i + 100][np.arange(i + 1, i + 100) % 16 != 0] > 0)


def test_shuffle_is_seeded_by_seed_and_epoch(units):
    a = pack(units, PackConfig(seq_len=32, seed=1)).input_ids
    b = pack(units, PackConfig(seq_len=32, seed=1)).input_ids
    c = pack(units, PackConfig(seq_len=32, seed=2)).input_ids
    d = pack(units, PackConfig(seq_len=32, seed=1), epoch=1).input_ids
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def block_starts(ds: Dataset, packed: PackedSequences, level: str) -> set[int]:
    """Flat stream offsets where a unit (``megadoc``) or document (``document``) starts."""
    where = {int(t): i for i, t in enumerate(packed.input_ids.reshape(-1))}
    out = set()
    for ids, docs in zip(ds["input_ids"], ds["doc_starts"]):
        offs = [0] if level == "megadoc" else docs
        out.update(where[ids[o]] for o in offs if ids[o] in where)
    return out


@pytest.mark.parametrize("attention", ["cross_document", "megadoc", "document"])
def test_position_ids_and_labels_per_mode(units, attention):
    from transformers.masking_utils import find_packed_sequence_indices

    L = 41
    packed = pack(units, PackConfig(seq_len=L, attention=attention))
    pos = np.asarray(packed.position_ids).reshape(-1)
    flat = np.arange(len(pos))
    resets = set(flat[pos == 0].tolist())
    expected = set(range(0, len(pos), L))
    if attention != "cross_document":
        expected |= block_starts(units, packed, attention)
    assert resets == expected
    # Within a block positions count up by one.
    assert np.all((np.diff(pos) == 1) | (pos[1:] == 0))
    # transformers sees exactly our blocks.
    seg = find_packed_sequence_indices(
        torch.tensor(np.asarray(packed.position_ids), dtype=torch.long)
    )
    n_blocks_per_row = [(row == 0).sum() for row in np.asarray(packed.position_ids)]
    if attention == "cross_document":
        assert seg is None
    else:
        assert (seg[:, -1] + 1).tolist() == n_blocks_per_row
    # Labels: block starts (not column 0) are never predicted in blocked modes.
    batch = packed.batch(range(len(packed)))
    masked = batch["labels"] == IGNORE_INDEX
    if attention == "cross_document":
        assert not masked.any()
    else:
        starts = batch["position_ids"] == 0
        starts[:, 0] = False
        assert np.array_equal(masked, starts)
        assert np.array_equal(batch["labels"][~masked], batch["input_ids"][~masked])


def test_padding_is_masked_and_counted():
    ds = make_units(n_units=3, seed=5)
    n = sum(ds["num_tokens"])
    packed = pack(ds, PackConfig(seq_len=n + 10, drop_last=False))
    row = packed[0]
    assert len(packed) == 1 and packed.stats.padding_tokens == 10
    assert np.all(row["labels"][-10:] == IGNORE_INDEX) and np.all(row["roles"][-10:] == PAD_ROLE_ID)
    assert np.all(row["labels"][:-10] >= 0)


def test_too_few_tokens_and_bad_input_errors(units):
    ds = make_units(n_units=2, seed=5)
    with pytest.raises(ValueError, match="seq_len"):
        pack(ds, PackConfig(seq_len=10_000))
    with pytest.raises(ValueError, match="missing"):
        pack(Dataset.from_dict({"text": ["a"]}), PackConfig(seq_len=8))
    with pytest.raises(ValueError, match="PackConfig.seq_len"):
        PackConfig(seq_len=1)
    with pytest.raises(ValueError, match="PackConfig.attention"):
        PackConfig(attention="blocks")  # type: ignore[arg-type]
    with pytest.raises(IndexError):
        pack(units, PackConfig(seq_len=16))[10**6]


def test_save_and_memory_mapped_load(units, tmp_path):
    for attention in ("cross_document", "document"):
        packed = pack(units, PackConfig(seq_len=32, attention=attention, drop_last=False))
        packed.save(tmp_path / attention)
        loaded = PackedSequences.load(tmp_path / attention)
        assert isinstance(loaded.input_ids, np.memmap)
        assert loaded.stats == packed.stats and len(loaded) == len(packed)
        for k, v in packed.batch([0, 3, len(packed) - 1]).items():
            assert np.array_equal(loaded.batch([0, 3, len(packed) - 1])[k], v), k


def test_pack_cache_dir_saves_once_and_maps(units, tmp_path):
    cfg = PackConfig(seq_len=32, attention="document")
    first = pack(units, cfg, cache_dir=tmp_path)
    assert isinstance(first.input_ids, np.memmap)
    (entry,) = [p for p in tmp_path.iterdir()]
    mtime = (entry / "input_ids.npy").stat().st_mtime_ns
    again = pack(units, cfg, cache_dir=tmp_path)
    assert (entry / "input_ids.npy").stat().st_mtime_ns == mtime  # mapped, not re-packed
    plain = pack(units, cfg)
    for k, v in plain.batch(range(len(plain))).items():
        assert np.array_equal(again.batch(range(len(again)))[k], v), k
    pack(units, PackConfig(seq_len=32, attention="document", seed=1), cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2  # a different config gets its own entry


@pytest.mark.parametrize("attention", ["cross_document", "megadoc", "document"])
@pytest.mark.parametrize("drop_last", [True, False])
def test_small_chunks_and_files_pack_exactly_what_one_chunk_in_memory_packs(
    units, attention, drop_last, tmp_path, monkeypatch
):
    """The packer walks units in chunks; where the chunks end changes nothing: not the
    rows, not the attention blocks (positions carried across chunk ends), not the counts."""
    import hf_megadocs.mapped_pages as mapped_pages
    import hf_megadocs.training.data.packing as packing

    cfg = PackConfig(seq_len=37, attention=attention, drop_last=drop_last, seed=5)
    monkeypatch.setattr(mapped_pages, "RELEASE_EVERY_BYTES", 1 << 40)  # all units, one chunk
    whole = pack(units, cfg)
    monkeypatch.setattr(packing, "CHUNK_TOKENS", 41)  # ~1-2 units per chunk, mid-row ends
    assert len(packing._chunk_bounds(np.asarray(units["num_tokens"]), 1 << 30)) > 20
    chunked = [pack(units, cfg), pack(units, cfg, cache_dir=tmp_path)]
    monkeypatch.setattr(packing, "CHUNK_TOKENS", 1 << 20)
    monkeypatch.setattr(mapped_pages, "RELEASE_EVERY_BYTES", 0)  # one unit per chunk
    chunked.append(pack(units, cfg))
    for packed in chunked:
        assert packed.stats == whole.stats
        for k, v in whole.batch(range(len(whole))).items():
            assert np.array_equal(packed.batch(range(len(packed)))[k], v), k


def test_a_multi_chunk_arrow_table_is_read_without_concatenating_it(tmp_path):
    """A dataset saved to disk in many Arrow record batches packs as the same rows."""
    from datasets import load_from_disk

    units = make_units(n_units=50, seed=2)
    units.save_to_disk(str(tmp_path / "units"), max_shard_size="2KB")
    on_disk = load_from_disk(str(tmp_path / "units"))
    assert len(on_disk.with_format("arrow")[:].column("input_ids").chunks) > 1
    cfg = PackConfig(seq_len=16, attention="document", seed=1)
    a, b = pack(units, cfg), pack(on_disk, cfg)
    for k, v in a.batch(range(len(a))).items():
        assert np.array_equal(b.batch(range(len(b)))[k], v), k


def _tiny_llama(attn: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=1024,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        attn_implementation=attn,
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize(
    "attn, attention", [("sdpa", "document"), ("eager", "document"), ("sdpa", "megadoc")]
)
def test_blocked_mode_loss_equals_unpacked_loss(attn, attention):
    """document/megadoc modes: the packed loss equals the loss of its blocks run one by one."""
    ds = make_units(n_units=12, seed=7, max_docs=3, max_doc_len=20)
    ds = ds.map(lambda r: {"input_ids": [t % 1000 + 1 for t in r["input_ids"]]})
    packed = pack(ds, PackConfig(seq_len=48, attention=attention, drop_last=True))
    model = _tiny_llama(attn)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add contention on a shared CPU
    try:
        _check_blocked_loss(model, packed)
    finally:
        torch.set_num_threads(threads)


def _check_blocked_loss(model, packed) -> None:
    batch = {
        k: torch.from_numpy(np.ascontiguousarray(v)).long()
        for k, v in packed.batch(range(len(packed))).items()
        if k != "roles"
    }
    with torch.no_grad():
        packed_loss = model(**batch, use_cache=False).loss.double()
        # Reference: every attention block (a document, or the part of it in this row) alone.
        total, count = torch.zeros((), dtype=torch.float64), 0
        for ids, pos in zip(batch["input_ids"], batch["position_ids"]):
            cuts = torch.nonzero(pos == 0).flatten().tolist() + [len(ids)]
            for a, b in itertools.pairwise(cuts):
                if b - a < 2:
                    continue
                block = ids[a:b].unsqueeze(0)
                logits = model(input_ids=block).logits[0, :-1].double()
                total += torch.nn.functional.cross_entropy(logits, block[0, 1:], reduction="sum")
                count += b - a - 1
    assert count == int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert abs(packed_loss.item() - (total / count).item()) < 1e-5
    # Sanity: cross-document attention on the same tokens gives a different loss.
    with torch.no_grad():
        cross = model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss.item()
    assert abs(cross - packed_loss.item()) > 1e-4


def test_two_ranks_map_one_packed_file_and_read_disjoint_complete_shards(units, tmp_path):
    """What the trainer does on a node: rank 0 packs into the cache, every rank maps it."""
    from hf_megadocs.training.data.mixing import MixConfig, MixingSampler

    cfg = PackConfig(seq_len=16, attention="document")
    reference = pack(units, cfg)
    pack(units, cfg, cache_dir=tmp_path)
    (entry,) = tmp_path.iterdir()
    ranks = [PackedSequences.load(entry) for _ in range(2)]
    assert all(r.input_ids.filename == ranks[0].input_ids.filename for r in ranks)
    mix = MixConfig(synthetic_share=0.5, global_batch_size=4, real_epochs=2, seed=3)
    samplers = [
        MixingSampler(len(reference), len(reference), mix, rank=r, world_size=2) for r in (0, 1)
    ]
    whole = MixingSampler(len(reference), len(reference), mix)
    for step, per_rank in enumerate(zip(*samplers, strict=True)):
        assert not set(per_rank[0]) & set(per_rank[1])
        assert [p for rows in per_rank for p in rows] == whole.global_batch(step)
        for packed, rows in zip(ranks, per_rank, strict=True):
            indices = [i for _, i in rows]
            for k, v in reference.batch(indices).items():
                assert np.array_equal(packed.batch(indices)[k], v), k
    assert step + 1 == len(whole)
