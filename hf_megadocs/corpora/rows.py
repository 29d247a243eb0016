"""Turn a :class:`~hf_megadocs.corpora.plan.CorpusPlan` and the generation store into rows.

Runs inside ``_generate_examples`` (possibly in ``num_proc`` workers): it only reads the
store and calls the pure functions of :mod:`hf_megadocs.corpora.assembly`. Generations the plan
marked unusable are skipped here; they were counted when the plan was made.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from hf_megadocs.corpora import assembly
from hf_megadocs.corpora.names import ONE_ROW_PER_DOC, SHUFFLED
from hf_megadocs.corpora.plan import READ_CHUNK, CorpusPlan, DocPlan
from hf_megadocs.records import Generation

if TYPE_CHECKING:
    from hf_megadocs.generation.store import GenerationStore

_STITCHED_POSITION = {
    "stitched": "last",
    "stitched_real_first": "first",
    "stitched_no_real": "none",
}


@lru_cache(maxsize=2)
def _order(num_rows: int, seed: int) -> tuple[int, ...]:
    return tuple(assembly.shuffled_order(num_rows, seed))


def _row(plan: CorpusPlan, built: assembly.Assembled, source_id: str, real: bool = False) -> dict:
    generated = not real and plan.method != "real"
    return assembly.make_row(
        built,
        source_id=source_id,
        method="real" if real else plan.method,
        num_generations=0 if real else plan.num_generations,
        generator=plan.generator if generated else "",
        prompt_id=plan.prompt_id if generated else "",
        prompt_hash=plan.prompt_hash if generated else "",
        seed=plan.seed,
    )


def iter_rows(
    plan: CorpusPlan, split: str, start: int, end: int, store: GenerationStore | None
) -> Iterator[dict[str, Any]]:
    """Rows for work units ``[start, end)`` of ``split`` (validation splits: real docs only)."""
    if split in ("validation", "validation_long"):
        docs = plan.validation if split == "validation" else plan.validation_long
        for doc in docs[start:end]:
            yield _row(plan, assembly.assemble_real(doc.text), doc.source_id, real=True)
        return
    if plan.method == "real":
        for doc_plan in plan.train[start:end]:
            yield _row(plan, assembly.assemble_real(doc_plan.doc.text), doc_plan.doc.source_id)
        return
    per_doc = plan.units_per_doc()
    if plan.method in SHUFFLED:
        units = _order(len(plan.train) * per_doc, plan.seed)[start:end]
    else:
        units = tuple(range(start, end))
    # (doc index, generation index or -1 for the real doc of a simple row) per unit
    if plan.method in ONE_ROW_PER_DOC:
        wanted = [(u, None) for u in units]
    elif plan.method == "simple":
        wanted = [(u // per_doc, u % per_doc - 1) for u in units]
    else:
        wanted = [(u // per_doc, u % per_doc) for u in units]
    for chunk_start in range(0, len(wanted), READ_CHUNK):
        chunk = wanted[chunk_start : chunk_start + READ_CHUNK]
        keys = []
        for doc_index, gen_index in chunk:
            doc_plan = plan.train[doc_index]
            if gen_index is None:
                keys.extend(doc_plan.keys)
            elif 0 <= gen_index < doc_plan.num_keys:
                keys.append(doc_plan.key(gen_index))
        if store is None:
            raise ValueError(f"iter_rows needs the generation store for method {plan.method!r}.")
        # Unusable generations are skipped here too: a streamed plan (corpora.stored) has
        # not read the records to list them in plan.unusable.
        found = {
            key: generation
            for key, generation in store.get_many(k for k in keys if k not in plan.unusable).items()
            if generation.usable
        }
        for doc_index, gen_index in chunk:
            row = _assemble_unit(plan, plan.train[doc_index], gen_index, found)
            if row is not None:
                yield row


def _assemble_unit(
    plan: CorpusPlan, doc_plan: DocPlan, gen_index: int | None, found: dict[str, Generation]
) -> dict[str, Any] | None:
    doc = doc_plan.doc
    if gen_index is None:  # one row per document: stitched variants and latent
        if plan.method == "latent":
            rationales = [found.get(key) for key in doc_plan.keys]
            built = assembly.assemble_latent(
                doc.text,
                doc_plan.points,
                rationales,
                open_delimiter=plan.latent_open,
                close_delimiter=plan.latent_close,
            )
        else:
            rephrases = [found[key] for key in doc_plan.keys if key in found]
            if not rephrases and plan.method == "stitched_no_real":
                return None  # nothing generated survived: the row would be empty
            built = assembly.assemble_stitched(
                doc.text,
                rephrases,
                real_position=_STITCHED_POSITION[plan.method],  # type: ignore[arg-type]
                separator=plan.separator,
            )
        return _row(plan, built, doc.source_id)
    if gen_index < 0:  # the real document's own row in simple rephrasing
        return _row(plan, assembly.assemble_real(doc.text), doc.source_id)
    key = doc_plan.key(gen_index) if gen_index < doc_plan.num_keys else None
    if key not in found:
        return None  # skipped by the context policy, or unusable (both counted in the plan)
    generation = found[key]
    if plan.method == "reformat":
        built = assembly.assemble_reformat(generation)
        if built is None:  # malformed (a prepared plan lists these in plan.unusable)
            return None
    else:
        role = "rephrase" if plan.method in SHUFFLED else plan.method
        built = assembly.assemble_generation(generation, role)  # type: ignore[arg-type]
    return _row(plan, built, doc.source_id)


__all__ = ["iter_rows"]
