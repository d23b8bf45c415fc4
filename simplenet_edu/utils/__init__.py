"""Leaf helpers that every layer of the package uses and that import nothing of the package.

- :mod:`~simplenet_edu.utils.errors`: :class:`InputError` (a user's mistake, one line), :class:`WriteError`
  (a file that cannot be written: full disk, permission, a parent that is a file) and :class:`DataWarning`;
- :mod:`~simplenet_edu.utils.atomic`: every file the package writes goes through here (a temporary
  name, then a rename: nothing half-written; a failed write in one line), and a CSV written row by
  row whose text cells never run as spreadsheet formulas;
- :mod:`~simplenet_edu.utils.device`: the CPU or the GPU;
- :mod:`~simplenet_edu.utils.stats`: the one "mean ± std" (sample standard deviation) and the robust spread.
"""
