"""The notebooks are committed clean: no outputs, no execution counts, the standard kernel.

Outputs hold pictures, timings and local paths, which bloat the repository and make every diff
noisy. Strip them with ``nbstripout --keep-id notebooks/*.ipynb`` before committing (``--keep-id``: without it
nbstripout renumbers the cell ids, and every cell shows as changed).
"""

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
COURSE = (
    "00_introduction_and_data", "01_feature_extraction", "02_feature_adaptation",
    "03_anomalous_feature_generation", "04_discriminator_training", "05_evaluation_and_localization",
    "06_simplenet_from_scratch", "07_thresholds", "08_ablations", "09_capstone", "10_supersimplenet",
)  # fmt: skip
# Every notebook, the solutions under notebooks/solutions/ included (nbval runs them all).
ALL = sorted(p for p in NOTEBOOKS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def problems(notebook: dict) -> list[str]:
    """What keeps a notebook (as parsed JSON) from being clean, one line per problem."""
    found = []
    kernel = notebook.get("metadata", {}).get("kernelspec", {}).get("name")
    if kernel != "python3":
        found.append(f"kernelspec name is {kernel!r}, not 'python3'")
    ids = [cell.get("id") for cell in notebook.get("cells", [])]
    if len(ids) > 2 and ids == [str(i) for i in range(len(ids))]:
        found.append("cell ids renumbered 0, 1, 2, ... (every cell shows as changed in the diff)")
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            found.append(f"cell {index} has outputs")
        if cell.get("execution_count") is not None:
            found.append(f"cell {index} has execution count {cell['execution_count']}")
    return found


def test_the_course_notebooks_exist():
    present = {path.stem for path in NOTEBOOKS.glob("*.ipynb")}
    assert set(COURSE) <= present, f"missing: {sorted(set(COURSE) - present)}"


def test_every_course_notebook_has_its_solutions():
    present = {path.stem for path in (NOTEBOOKS / "solutions").glob("*.ipynb")}
    wanted = {f"{name[:2]}_solutions" for name in COURSE}
    assert wanted <= present, f"missing: {sorted(wanted - present)}"


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_notebook_is_stripped(path):
    found = problems(json.loads(path.read_text(encoding="utf-8")))
    assert not found, f"{path.name}: " + "; ".join(found) + " (run: nbstripout --keep-id notebooks/*.ipynb)"


def test_the_check_catches_a_dirty_notebook():
    dirty = {
        "metadata": {"kernelspec": {"name": "my-venv"}},
        "cells": [
            {"cell_type": "markdown", "source": "# title"},
            {"cell_type": "code", "execution_count": 3, "outputs": [{"output_type": "stream", "text": "0x7f"}]},
            {"cell_type": "code", "execution_count": None, "outputs": []},
        ],
    }
    assert problems(dirty) == [
        "kernelspec name is 'my-venv', not 'python3'",
        "cell 1 has outputs",
        "cell 1 has execution count 3",
    ]
    clean = {"metadata": {"kernelspec": {"name": "python3"}}, "cells": dirty["cells"][:1] + dirty["cells"][2:]}
    assert problems(clean) == []
    renumbered = {"metadata": clean["metadata"],
                  "cells": [dict(cell, id=str(i)) for i, cell in enumerate(dirty["cells"][:1] * 3)]}
    assert problems(renumbered) == ["cell ids renumbered 0, 1, 2, ... (every cell shows as changed in the diff)"]
    kept = {"metadata": clean["metadata"], "cells": [dict(cell, id=name) for cell, name in
                                                      zip(renumbered["cells"], ("a1f3", "0", "1"))]}
    assert problems(kept) == []
