"""Honest evaluation for every model: :mod:`.metrics` (AUROC, AUPRO, F1, the normal threshold),
:mod:`.localization` (patch scores to pixel maps), :mod:`.evaluator` (score a test set) and
:mod:`.report` (what ``evaluate`` prints and writes)."""
