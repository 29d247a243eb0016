"""Corpora: config names, pure assembly, and the ``datasets`` builder.

:mod:`~.names` parses ``stitched_g32``; :mod:`~.config` is :class:`MegadocsConfig` (the
builder config, composed of the generation configs); :mod:`~.plan` reads the source, splits
it by ``source_id`` and plans the requests a corpus needs; :mod:`~.assembly` turns one
document and its generations into a row (pure functions); :mod:`~.rows` reads the store
and assembles; :mod:`~.builder` is the ``datasets`` builder; :mod:`~.registration` makes
``load_dataset("hf_megadocs", ...)`` find it. Entry points: :func:`~.load.load_corpus`
and :func:`~.load.shared_backend`. Uses :mod:`hf_megadocs.generation`; nothing here trains.
"""
