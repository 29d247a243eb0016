"""The Hub: Parquet export, dataset cards with full provenance, upload.

:mod:`~.export` writes each config and split as Parquet and uploads the folder
(:func:`~.export.push_to_hub`); :mod:`~.provenance` gathers what the card says from the
corpora and the generation store; :mod:`~.card` renders and validates the card from the
template in ``templates/`` (package data). ``hf-megadocs push`` is :mod:`~.cli`.
"""
