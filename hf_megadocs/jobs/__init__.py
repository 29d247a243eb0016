"""Jobs that chain the stages: the main job (:mod:`~.demo`), hyperparameter sweeps
(:mod:`~.sweep`) and the coordinate search a sweep runs over its grid (:mod:`~.search`).

Every job starts training through :func:`hf_megadocs.training.launch.launch_command`, the
one place that builds the ``accelerate launch -m hf_megadocs.train`` command (it lives in
``training`` because the Hub card's provenance prints the same command).
"""
