"""Jobs that chain the stages: the main job (:mod:`~.demo`), hyperparameter sweeps
(:mod:`~.sweep`), and :mod:`~.launch`, the one place that builds the
``accelerate launch recipes/train.py`` command every job runs.
"""
