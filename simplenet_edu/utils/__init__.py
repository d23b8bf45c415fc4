"""Leaf helpers that every layer of the package uses and that import nothing of the package.

- :mod:`~simplenet_edu.utils.errors`: :class:`InputError` (a user's mistake, one line) and :class:`DataWarning`;
- :mod:`~simplenet_edu.utils.atomic`: every file the package writes goes through here (a temporary
  name, then a rename: nothing half-written);
- :mod:`~simplenet_edu.utils.device`: the CPU or the GPU;
- :mod:`~simplenet_edu.utils.stats`: the one "mean ± std" (sample standard deviation) and the robust spread.
"""
