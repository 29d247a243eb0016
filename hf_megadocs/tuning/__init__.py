"""Generator tuning and model-aware rounds (SynPro), on TRL and peft.

- ``tune``: ``tune_generator(TuneConfig)`` runs TRL's GRPOTrainer with a LoRA adapter on a
  rephrase or reformat prompt, rewarded by ``rewards`` (length, format, faithfulness over
  an embedded sentence encoder, quality delta) and ``influence`` (data influence on a
  checkpoint of our own trainer); ``hf-megadocs tune-generator``.
- ``rounds``: ``run_rounds(RoundsConfig)`` detects a plateau, tunes, selects documents
  (``selection``), regenerates them with the round's adapter (``round_corpora``) and
  continues pre-training on real data plus the union of every round's corpora;
  ``hf-megadocs rounds``.
"""
