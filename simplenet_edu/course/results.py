"""What ``results/`` records, for the notebooks that compare models: the paper's MVTec AD numbers and
the development suite's table (SimpleNet, SuperSimpleNet, the nearest-neighbour baseline, PatchCore)."""

from __future__ import annotations

import json
from pathlib import Path

from ..utils.errors import InputError

# The repository's results/ folder (the course runs from a checkout: its data ships there too).
RESULTS = Path(__file__).resolve().parents[2] / "results"


# The paper's MVTec AD results (Liu et al., CVPR 2023, Table 1), in percent: (image AUROC, pixel AUROC)
# per category. The paper picked the best epoch on the test set (its official code keeps the epoch of
# the best test AUROC); this package reports the last step. Their means are the paper's headline 99.6
# and 98.1.
PAPER_MVTEC_AD = {
    "carpet": (99.7, 98.2), "grid": (99.7, 98.8), "leather": (100.0, 99.2), "tile": (99.8, 97.0),
    "wood": (100.0, 94.5), "bottle": (100.0, 98.0), "cable": (99.9, 97.6), "capsule": (97.7, 98.9),
    "hazelnut": (100.0, 97.9), "metal_nut": (100.0, 98.8), "pill": (99.0, 98.6), "screw": (98.2, 99.3),
    "toothbrush": (99.7, 98.5), "transistor": (100.0, 97.6), "zipper": (99.9, 98.9),
}


# ------------------------------------------------------------------ the development suite, as measured

# The suite's real sets, in the order results/ lists them, and the file of each model's rows.
SUITE_SETS = ("hazelnut_toy", "metal_plate", "cookie", "solar_cell")
_SUITE_RUNS = {"SimpleNet (CPU default)": "suite_default.json", "SuperSimpleNet (CPU default)": "suite_supersimplenet.json"}
_SUITE_PEERS = {"nearest neighbour": "nearest neighbour on the same features", "PatchCore": "PatchCore (anomalib"}


def _peer_rows(path: Path) -> dict:
    """The nearest-neighbour and PatchCore rows of the outcome table of ``default_sweep.md``, whose
    cells read ``image AUROC / AUPRO`` per set (``image AUROC`` alone on a set without masks)."""
    found = {}
    for line in path.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        for name, start in _SUITE_PEERS.items():
            if name not in found and cells[0].startswith(start) and len(cells) > len(SUITE_SETS):
                values = [[float(v) for v in cell.split("/")] for cell in cells[1:1 + len(SUITE_SETS)]]
                found[name] = {s: {"image_auroc": v[0], "aupro": v[1] if len(v) > 1 else None}
                               for s, v in zip(SUITE_SETS, values)}
    return found


def suite_results() -> dict:
    """What ``results/`` records of the development suite (the four real sets, three seeds, last step):
    ``{"rows": {model: {set: {"image_auroc", "aupro"}}}, "made_by": {model: text}}``.

    SimpleNet's and SuperSimpleNet's rows are the per-set means of ``suite_default.json`` and
    ``suite_supersimplenet.json``; the nearest-neighbour baseline's and PatchCore's (anomalib, the same
    Lite0 backbone at 256 px, seed 0) are the rows of the outcome table of ``default_sweep.md``. A
    missing or unreadable file is an :class:`InputError` naming it.
    """
    folder = RESULTS
    rows, made_by = {}, {}
    for model, name in _SUITE_RUNS.items():
        try:
            run = json.loads((folder / name).read_text())
            per_set = run["summary"]["per_set"]
        except (OSError, ValueError, KeyError) as error:
            raise InputError(folder / name, f"cannot read the suite's results ({error})") from None
        rows[model] = {s: {k: (per_set[s][k] or [None])[0] for k in ("image_auroc", "aupro")} for s in SUITE_SETS}
        command = run["command"].strip()
        if command.startswith("python benchmarks/"):    # the same run as the module form the project uses
            script, _, rest = command.removeprefix("python benchmarks/").partition(" ")
            command = f"python -m benchmarks.{script.removesuffix('.py')} {rest}".strip()
        made_by[model] = f"results/{name}, made by `{command}`"
    sweep = folder / "default_sweep.md"
    try:
        peers = _peer_rows(sweep)
    except OSError as error:
        raise InputError(sweep, f"cannot read the suite's results ({error})") from None
    if set(peers) != set(_SUITE_PEERS):
        raise InputError(sweep, f"the outcome table lacks the rows of {sorted(set(_SUITE_PEERS) - set(peers))}")
    rows.update(peers)
    for model in peers:
        made_by[model] = "results/default_sweep.md, the outcome table (its commands are in that file)"
    return {"rows": rows, "made_by": made_by}


def suite_table(results: dict | None = None) -> str:
    """:func:`suite_results` as a text table: per set, ``image AUROC / AUPRO`` of each model (image
    AUROC alone where the set has no masks), then the means over the sets that have each metric; the
    highest value of each metric and set is marked ``*``."""
    rows = (results or suite_results())["rows"]
    keys = ("image_auroc", "aupro")

    def mean(model: str, key: str) -> float:
        values = [rows[model][s][key] for s in SUITE_SETS if rows[model][s][key] is not None]
        return sum(values) / len(values)

    cells = {m: {**{s: [rows[m][s][k] for k in keys] for s in SUITE_SETS}, "mean": [mean(m, k) for k in keys]}
             for m in rows}
    header = [*SUITE_SETS, "mean"]
    best = {(c, i): max(v[c][i] for v in cells.values() if v[c][i] is not None) for c in header for i in range(2)
            if any(v[c][i] is not None for v in cells.values())}

    def text(column: str, values: list) -> str:
        return " / ".join(f"{v:.3f}" + ("*" if v == best[column, i] else " ") for i, v in enumerate(values) if v is not None)

    table = [["img / AUPRO", *header]] + [[m, *(text(c, cells[m][c]) for c in header)] for m in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) + 1)]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in table]
    return "\n".join(lines + ["(* the highest of its set and metric; means over the sets that have the metric)"])
