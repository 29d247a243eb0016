"""Training data: tokenize → pack → mix → collate, and the streams that feed them.

:mod:`~.tokenize` (EOS per document, per-token roles), :mod:`~.packing` (megadoc-aware,
fixed-length rows, attention blocks as position ids), :mod:`~.mixing` (exact real/synthetic
share per global batch, stateful, rank-sharded), :mod:`~.collate` (rows → tensors) and
:mod:`~.streams` (:func:`~.streams.build_train_data`, which loads the corpora and runs the
rest for one process).
"""
