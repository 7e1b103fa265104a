"""Experiment helpers for the notebooks and the benchmarks: timed comparisons and paired intervals (`measure`), and
the scale experiments of notebook 02 (`scale`). The runtime — setup, the database, the service — never imports them
(tools/layers.py checks it), so a measurement's machinery can grow without weighing on what a learner runs."""
