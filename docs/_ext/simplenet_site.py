"""The website's own Sphinx extension: the notebooks copied in, numbers read from ``results/``, widget stills.

- **Notebooks.** Sphinx reads only what lies under ``docs/``, so at every build the notebooks of
  ``notebooks/`` (solutions and README too) are copied to ``docs/notebooks/`` (ignored by git; edit the
  originals), with an index page for the solutions. Unchanged files keep their time stamp, so Sphinx
  rereads only what changed.
- **Numbers from ``results/``.** ``{results-table}`` renders a table from the JSON that
  ``python -m benchmarks.suite`` (or ``benchmarks.suite_compare``) wrote, and the ``{result}`` role quotes one value
  from any ``results/*.json``, both while the site is built: re-running a benchmark updates the site,
  and no page copies a number by hand. Spreads over seeds are :func:`simplenet_edu.utils.stats.mean_std`.
- **Widget stills.** A static page has no kernel, so a widget cannot react to its controls. Each widget
  output becomes a still: the widget drawn from the state saved when the notebook ran (its pictures,
  numbers and the position of its controls, the controls disabled), and, where it has controls, a note
  saying how to run it live.
- ``site_execution = "cached-only"`` (``build.py --cached-only``): show the outputs already in the
  execution cache and run no notebook; the others are shown without outputs.
"""

from __future__ import annotations

import html
import json
import posixpath
import re
import shutil
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from simplenet_edu.data.demo import DEMO_CATEGORIES
from simplenet_edu.utils.stats import MEAN_STD_NOTE, format_mean_std, mean_std

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"
NOTEBOOKS = ROOT / "notebooks"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
LOG = logging.getLogger(__name__)

LABELS = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "aupro": "AUPRO", "f1_max": "F1-max",
          "wall_seconds": "wall s", "fit_seconds": "features + training s", "seconds_train": "training s",
          "seconds_features": "features s"}


class ResultsError(ValueError):
    """A results file, or a path into one, that a page asks for and that is not there."""


# ------------------------------------------------------------------------------------------ notebooks


SOLUTIONS_INDEX = """# Solutions

Worked solutions to the exercises of notebooks 00-10, one notebook per course notebook; each runs on
its own, in the same three sizes.

```{toctree}
:glob:
:maxdepth: 1

*_solutions
```
"""


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def sync_notebooks(source: Path, target: Path) -> list[str]:
    """Copy ``source``'s notebooks and Markdown files (checkpoints left out) to ``target``, remove
    those of ``target`` that ``source`` does not have, and write ``solutions/index.md`` where there
    are solutions. Returns the copied files, relative to ``target``."""
    wanted = sorted(p.relative_to(source) for p in source.rglob("*")
                    if p.suffix in (".ipynb", ".md") and p.is_file() and ".ipynb_checkpoints" not in p.parts)
    for relative in wanted:
        origin, copy = source / relative, target / relative
        if not copy.exists() or copy.read_bytes() != origin.read_bytes():
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, copy)
    generated = {Path("solutions") / "index.md"} if (source / "solutions").is_dir() else set()
    if target.exists():
        for stale in [p for p in target.rglob("*") if p.suffix in (".ipynb", ".md") and p.is_file()]:
            if stale.relative_to(target) not in set(wanted) | generated:
                stale.unlink()
    if generated:
        _write_if_changed(target / "solutions" / "index.md", SOLUTIONS_INDEX)
    return [str(p) for p in wanted]


def _uncached(target: Path, cache_path: Path) -> list[str]:
    """The notebooks under ``target`` whose current code has no executed copy in the cache."""
    import nbformat
    from jupyter_cache import get_cache

    notebooks = sorted(target.rglob("*.ipynb"))
    if not (cache_path / "global.db").exists():
        return [str(p.relative_to(target.parent)) for p in notebooks]
    cache = get_cache(str(cache_path))
    missing = []
    for path in notebooks:
        try:
            cache.match_cache_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            missing.append(str(path.relative_to(target.parent)))
    return missing


def drop_stale_stubs(stubs: Path, package: Path) -> list[str]:
    """Remove the API stubs (``simplenet_edu.x.y.rst``) of modules the package does not have:
    autosummary writes a stub per module but never removes one."""
    removed = []
    for stub in sorted(stubs.glob("*.rst")) if stubs.is_dir() else []:
        parts = stub.stem.split(".")[1:]
        module = package.joinpath(*parts)
        if not (module.with_suffix(".py").is_file() or (module / "__init__.py").is_file()):
            stub.unlink()
            removed.append(stub.name)
    return removed


def on_config_inited(app, config) -> None:
    sync_notebooks(NOTEBOOKS, Path(app.srcdir) / "notebooks")
    drop_stale_stubs(Path(app.srcdir) / "_autosummary", ROOT / "simplenet_edu")
    if config.site_execution == "cached-only":
        config.nb_execution_mode = "cache"
        missing = _uncached(Path(app.srcdir) / "notebooks", Path(config.nb_execution_cache_path))
        config.nb_execution_excludepatterns = [*config.nb_execution_excludepatterns, *missing]
        if missing:
            LOG.info(f"site: {len(missing)} notebook(s) not in the execution cache, shown without outputs: "
                     + ", ".join(missing))
    elif config.site_execution:
        config.nb_execution_mode = config.site_execution


# ------------------------------------------------------------------------------------------ results


def results_file(name: str, results: Path = RESULTS) -> dict:
    """The JSON of ``results/NAME`` (``.json`` may be left out)."""
    path = results / (name if name.endswith(".json") else f"{name}.json")
    if not path.is_file():
        raise ResultsError(f"{path}: no such results file")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ResultsError(f"{path}: not valid JSON ({error})") from None


_STEP = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]|\[([^=\]]+)=([^\]]*)\]")


def lookup(data, path: str):
    """The value at ``path`` in ``data``: dotted keys, ``[i]`` for a list item, ``[key=value]`` for the
    item of a list of dicts whose ``key`` reads ``value`` (``rows[set=cookie].aupro``)."""
    position, value = 0, data
    while position < len(path):
        step = _STEP.match(path, position)
        if step is None or step.end() == position:
            raise ResultsError(f"cannot read the path {path!r} at {path[position:]!r}")
        key, index, field, wanted = step.groups()
        try:
            if key is not None:
                value = value[key]
            elif index is not None:
                value = value[int(index)]
            else:
                value = next(item for item in value if str(item.get(field)) == wanted)
        except (KeyError, IndexError, TypeError, StopIteration):
            raise ResultsError(f"{path!r}: nothing at {path[:step.end()]!r}") from None
        position = step.end()
    return value


def format_value(value, spec: str | None = None) -> str:
    """A value as a page shows it: floats with 3 decimals unless ``spec`` (a format spec) says otherwise."""
    if value is None:
        return "-"
    if spec:
        try:
            return format(value, spec)
        except (ValueError, TypeError):
            raise ResultsError(f"cannot format {value!r} with {spec!r}") from None
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def quote(text: str, results: Path = RESULTS) -> str:
    """What ``{result}`FILE PATH [SPEC]``` shows: the value at PATH in results/FILE, formatted by SPEC."""
    parts = text.split()
    if len(parts) not in (2, 3):
        raise ResultsError(f"{text!r}: expected 'FILE PATH [FORMAT]'")
    return format_value(lookup(results_file(parts[0], results), parts[1]), parts[2] if len(parts) == 3 else None)


def suite_runs(name: str, results: Path = RESULTS) -> list[tuple[str, dict]]:
    """``[(name, run)]``: one run of ``benchmarks.suite`` (named after its file), or every run of a
    ``benchmarks.suite_compare`` file (by the names it gives them)."""
    data = results_file(name, results)
    runs = data.get("runs")
    if isinstance(data.get("names"), list) and isinstance(runs, dict):
        return [(label, runs[label]) for label in data["names"]]
    if isinstance(runs, dict) and "seeds" in data:
        return [(Path(name).stem.removeprefix("suite_"), data)]
    raise ResultsError(f"results/{name}: not a run of benchmarks.suite or benchmarks.suite_compare")


def run_values(rows: list[dict], metric: str) -> list:
    """One value per seed; ``fit_seconds`` is feature extraction plus training."""
    if metric == "fit_seconds":
        return [None if r.get("seconds_features") is None or r.get("seconds_train") is None
                else r["seconds_features"] + r["seconds_train"] for r in rows]
    return [r.get(metric) for r in rows]


def parse_columns(text: str) -> list[list[tuple[str, int]]]:
    """``"image_auroc/aupro, wall_seconds:0"`` -> ``[[("image_auroc", 3), ("aupro", 3)], [("wall_seconds", 0)]]``:
    one column per comma, metrics sharing a cell joined by ``/``, digits after ``:`` (3 by default)."""
    columns = []
    for column in text.split(","):
        group = []
        for metric in column.strip().split("/"):
            key, _, digits = metric.strip().partition(":")
            group.append((key, int(digits) if digits else 3))
        columns.append(group)
    return columns


def _cell(rows: list[dict] | None, group: list[tuple[str, int]]) -> str:
    """Mean ± sample std over the seeds of each metric of ``group``, joined by `` / ``."""
    if rows is None:
        return ""
    return " / ".join(format_mean_std(*mean_std(run_values(rows, metric)), digits) for metric, digits in group)


def suite_table(runs: list[tuple[str, dict]], columns: list[list[tuple[str, int]]], sets: list[str] | None = None,
                ratio: str | None = None) -> tuple[list[str], list[list[str]], int]:
    """``(header, rows, n_mean_rows)`` of a table of suite runs: a row per set (per set and run where
    there are several runs) with the mean ± sample std over the seeds of each column's metrics, then
    a mean row per run averaging the per-set means (each metric over the sets that have it); the
    last ``n_mean_rows`` rows are the mean rows. ``sets``: which sets, in order (default every set of
    the first run but the demo textures). ``ratio``: a metric whose ratio of means, first run over
    second, gets a row per set."""
    if sets is None:
        sets = [name for name in runs[0][1]["runs"] if name not in DEMO_CATEGORIES]
    several = len(runs) > 1
    header = ["set", *(["run"] if several else []),
              *(" / ".join(LABELS.get(metric, metric) for metric, _ in group) for group in columns)]
    rows = []
    for set_name in sets:
        for label, run in runs:
            seeds = run["runs"].get(set_name)
            if seeds is not None:
                rows.append([set_name, *([label] if several else []), *(_cell(seeds, group) for group in columns)])
        if ratio:
            means = [mean_std(run_values(run["runs"].get(set_name) or [], ratio))[0] for _, run in runs[:2]]
            shown = "-" if None in means or not means[1] else f"{means[0] / means[1]:.2f}x"
            rows.append([set_name, f"{runs[0][0]} / {runs[1][0]}",
                         *(shown if any(metric == ratio for metric, _ in group) else "" for group in columns)])
    for label, run in runs:
        cells = []
        for group in columns:
            parts = []
            for metric, digits in group:
                means = [mean_std(run_values(run["runs"][name], metric))[0] for name in sets if name in run["runs"]]
                means = [m for m in means if m is not None]
                parts.append(f"{sum(means) / len(means):.{digits}f}" if means else "-")
            cells.append(" / ".join(parts))
        rows.append(["mean", *([label] if several else []), *cells])
    return header, rows, len(runs)


def _made_by(name: str, results: Path) -> str:
    data = results_file(name, results)
    # A recorded `python benchmarks/NAME.py ARGS` is the same run as `python -m benchmarks.NAME ARGS`.
    made_by = re.sub(r"python benchmarks/(\w+)\.py", r"python -m benchmarks.\1", data.get("command", "?").strip())
    return f"`results/{Path(name).with_suffix('.json').name}` (made by `{made_by}`)"


def _text_cell(text: str, bold: bool = False, label: bool = False) -> nodes.entry:
    paragraph = nodes.paragraph()
    paragraph += nodes.strong(text=text) if bold and text else nodes.Text(text)
    entry = nodes.entry(classes=["label"] if label else ["number"])
    entry += paragraph
    return entry


def table_node(header: list[str], rows: list[list[str]], n_bold: int = 0) -> nodes.table:
    """A docutils table; the last ``n_bold`` rows in bold, the set (and run) columns as labels."""
    n_labels = 2 if header[1:2] == ["run"] else 1
    table = nodes.table(classes=["results-table"])
    group = nodes.tgroup(cols=len(header))
    table += group
    for _ in header:
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    group += head
    row = nodes.row()
    for column, text in enumerate(header):
        row += _text_cell(text, label=column < n_labels)
    head += row
    body = nodes.tbody()
    group += body
    for number, cells in enumerate(rows):
        row = nodes.row()
        for column, text in enumerate(cells):
            row += _text_cell(text, bold=number >= len(rows) - n_bold, label=column < n_labels)
        body += row
    return table


class ResultsTable(SphinxDirective):
    """``{results-table} FILE [FILE...]``: a table of suite runs read from ``results/`` at build time.

    Options: ``:names:`` (one per run, comma-separated), ``:columns:`` (see :func:`parse_columns`;
    default ``image_auroc, pixel_auroc, aupro, wall_seconds:1``), ``:sets:`` (comma-separated; default
    every set but the demo textures), ``:ratio:`` (a metric; the first run's mean over the second's).
    """

    required_arguments = 1
    optional_arguments = 8
    option_spec = {"names": directives.unchanged, "columns": directives.unchanged, "sets": directives.unchanged,
                   "ratio": directives.unchanged}

    def run(self):
        results = Path(self.config.site_results)
        try:
            runs = [run for name in self.arguments for run in suite_runs(name, results)]
            if "names" in self.options:
                names = [name.strip() for name in self.options["names"].split(",")]
                if len(names) != len(runs):
                    raise ResultsError(f":names: gives {len(names)} names for {len(runs)} runs")
                runs = [(name, run) for name, (_, run) in zip(names, runs)]
            columns = parse_columns(self.options.get("columns", "image_auroc, pixel_auroc, aupro, wall_seconds:1"))
            sets = [s.strip() for s in self.options["sets"].split(",")] if "sets" in self.options else None
            ratio = self.options.get("ratio")
            if ratio and len(runs) < 2:
                raise ResultsError(":ratio: needs two runs")
            header, rows, n_mean = suite_table(runs, columns, sets, ratio)
            seeds = sorted({tuple(run["seeds"]) for _, run in runs})
            sources = "; ".join(_made_by(name, results) for name in self.arguments)
        except (ResultsError, KeyError, TypeError) as error:
            raise self.error(f"results-table: {error}") from None
        for name in self.arguments:
            self.env.note_dependency(str(results / (name if name.endswith(".json") else f"{name}.json")))
        seed_text = " / ".join(", ".join(map(str, s)) for s in seeds)
        caption = (f"Read from {sources} when this page was built. {MEAN_STD_NOTE[0].upper()}{MEAN_STD_NOTE[1:]}, "
                   f"over seeds {seed_text}; `-` where a set has no such metric (no masks); a mean row "
                   "averages the per-set means, each metric over the sets that have it.")
        note = nodes.container(classes=["results-source"])
        note.extend(self.parse_text_to_nodes(caption))
        return [table_node(header, rows, n_mean), note]


def result_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``{result}`FILE PATH [FORMAT]```: one value of ``results/FILE`` at ``PATH`` (see :func:`lookup`)."""
    env = inliner.document.settings.env
    results = Path(env.config.site_results)
    try:
        shown = quote(text, results)
    except ResultsError as error:
        message = inliner.reporter.error(f"result: {error}", line=lineno)
        problem = inliner.problematic(rawtext, rawtext, message)
        return [problem], [message]
    env.note_dependency(str(results / (text.split()[0] if text.split()[0].endswith(".json")
                                       else f"{text.split()[0]}.json")))
    return [nodes.inline(rawtext, shown, classes=["result"])], []


# ------------------------------------------------------------------------------------------ widget stills

CONTROLS = {"SelectionSliderModel", "SelectionRangeSliderModel", "IntSliderModel", "FloatSliderModel",
            "FloatLogSliderModel", "IntRangeSliderModel", "FloatRangeSliderModel", "ButtonModel", "DropdownModel",
            "SelectModel", "SelectMultipleModel", "RadioButtonsModel", "ToggleButtonsModel", "ToggleButtonModel",
            "CheckboxModel", "TextModel", "TextareaModel", "IntTextModel", "FloatTextModel", "BoundedIntTextModel",
            "BoundedFloatTextModel", "ComboboxModel", "PlayModel", "ColorPickerModel", "DatePickerModel"}


def _model_id(reference) -> str:
    return reference[len("IPY_MODEL_"):] if isinstance(reference, str) and reference.startswith("IPY_MODEL_") else ""


class _Still:
    """Draws a widget tree from saved widget state (``{model_id: {"model_name", "state", "buffers"}}``)."""

    def __init__(self, state: dict):
        self.state = state
        self.interactive = False

    def _model(self, model_id: str) -> tuple[str, dict, dict]:
        model = self.state.get(model_id, {})
        buffers = {tuple(b["path"]): b["data"] for b in model.get("buffers", []) if b.get("encoding") == "base64"}
        return model.get("model_name", ""), model.get("state", {}), buffers

    def _hidden(self, state: dict) -> bool:
        _, layout, _ = self._model(_model_id(state.get("layout")))
        return layout.get("display") == "none" or layout.get("visibility") == "hidden"

    def _description(self, state: dict) -> str:
        text = state.get("description") or ""
        return f'<span class="widget-still-label">{html.escape(text)}</span>' if text else ""

    def draw(self, model_id: str) -> str:
        name, state, buffers = self._model(model_id)
        if not name or self._hidden(state):
            return ""
        if name in CONTROLS:
            self.interactive = True
        label = self._description(state)
        if name in ("VBoxModel", "HBoxModel", "BoxModel", "GridBoxModel", "TabModel", "AccordionModel"):
            direction = "row" if name == "HBoxModel" else "column"
            inner = "".join(self.draw(_model_id(child)) for child in state.get("children", []))
            return f'<div class="widget-still-box" style="flex-direction:{direction}">{inner}</div>'
        if name in ("HTMLModel", "HTMLMathModel"):
            return f'<div class="widget-still-html">{label}{state.get("value", "")}</div>'
        if name == "LabelModel":
            return f'<div class="widget-still-html">{html.escape(str(state.get("value", "")))}</div>'
        if name == "ImageModel":
            data = buffers.get(("value",))
            if not data:
                return ""
            size = "".join(f' {key}="{html.escape(str(state[key]))}"' for key in ("width", "height") if state.get(key))
            kind = "svg+xml" if state.get("format") == "svg" else state.get("format", "png")
            return f'<img class="widget-still-image" alt="widget image" src="data:image/{kind};base64,{data}"{size}>'
        if name in ("FloatProgressModel", "IntProgressModel"):
            return (f'<div class="widget-still-control">{label}<progress value="{state.get("value", 0)}" '
                    f'max="{state.get("max", 100)}"></progress></div>')
        if name.endswith("SliderModel") and "_options_labels" in state:
            labels = state["_options_labels"]
            index = state.get("index", 0)
            index = index[0] if isinstance(index, list) else index
            shown = labels[index] if 0 <= index < len(labels) else ""
            return (f'<div class="widget-still-control">{label}<input type="range" disabled min="0" '
                    f'max="{max(len(labels) - 1, 0)}" value="{index}"><span class="widget-still-readout">'
                    f'{html.escape(str(shown))}</span></div>')
        if name.endswith("SliderModel"):
            return (f'<div class="widget-still-control">{label}<input type="range" disabled '
                    f'min="{state.get("min", 0)}" max="{state.get("max", 100)}" value="{state.get("value", 0)}">'
                    f'<span class="widget-still-readout">{html.escape(str(state.get("value", "")))}</span></div>')
        if name in ("ButtonModel", "ToggleButtonModel"):
            return f'<button class="widget-still-button" disabled>{html.escape(state.get("description", ""))}</button>'
        if "_options_labels" in state:
            labels = state["_options_labels"]
            index = state.get("index")
            chosen = {index} if isinstance(index, int) else set(index or [])
            options = "".join(f'<option{" selected" if i in chosen else ""}>{html.escape(str(text))}</option>'
                              for i, text in enumerate(labels))
            return f'<div class="widget-still-control">{label}<select disabled>{options}</select></div>'
        if name == "CheckboxModel":
            checked = " checked" if state.get("value") else ""
            return f'<div class="widget-still-control"><input type="checkbox" disabled{checked}>{label}</div>'
        if name == "OutputModel":
            return "".join(self._output(output) for output in state.get("outputs", []))
        if "value" in state:
            return (f'<div class="widget-still-control">{label}<input type="text" disabled '
                    f'value="{html.escape(str(state["value"]))}"></div>')
        return ""

    def _output(self, output: dict) -> str:
        if output.get("output_type") == "stream":
            return f'<pre class="widget-still-text">{html.escape(output.get("text", ""))}</pre>'
        data = output.get("data", {})
        for kind in ("image/png", "image/jpeg"):
            if kind in data:
                return f'<img class="widget-still-image" alt="output" src="data:{kind};base64,{data[kind]}">'
        if "text/html" in data:
            value = data["text/html"]
            return f'<div class="widget-still-html">{"".join(value) if isinstance(value, list) else value}</div>'
        if "text/plain" in data:
            value = data["text/plain"]
            return f'<pre class="widget-still-text">{html.escape("".join(value) if isinstance(value, list) else value)}</pre>'
        return ""


def widget_still(model_id: str, state: dict, live_hint: str = "") -> str:
    """HTML of a still of widget ``model_id`` from saved widget state; where the widget has controls,
    a note above it says that they need a kernel and ``live_hint`` (HTML) says how to run it live."""
    still = _Still(state)
    body = still.draw(model_id)
    if not body:
        return ('<p class="widget-still-note">A widget was shown here; its state was not saved when the '
                f"notebook ran, so there is no still of it. {live_hint}</p>")
    note = ""
    if still.interactive:
        note = ('<p class="widget-still-note"><b>A still of an interactive widget</b>, drawn from its state when '
                "the notebook ran for this site: its controls are disabled, since a static page has no Python "
                f"kernel to answer them. {live_hint}</p>")
    return f'<div class="widget-still">{note}{body}</div>'


class WidgetStills(SphinxPostTransform):
    """Replace every widget output of a notebook page by its still (before MyST-NB picks one output
    of each bundle, priority 4)."""

    default_priority = 3
    formats = ("html",)

    def run(self, **kwargs) -> None:
        docname = self.env.docname
        js_files = getattr(self.env, "nb_metadata", {}).get(docname, {}).get("js_files", {})
        saved = js_files.get("ipywidgets_state")
        state = json.loads(saved[1]["body"]).get("state", {}) if saved else {}
        course = "notebooks/README"
        hint = ("To use it, run the notebook in JupyterLab: <code>SIMPLENET_EDU_QUICK=1 jupyter lab notebooks/</code>"
                + (f' (<a href="{self.app.builder.get_relative_uri(docname, course)}">running the notebooks</a>).'
                   if course in self.env.found_docs else "."))
        for node in list(self.document.findall(nodes.container)):
            if node.get("mime_type") != WIDGET_VIEW:
                continue
            found = re.search(r">\s*(\{.*\})\s*<", node.astext(), re.DOTALL)
            try:
                model_id = json.loads(found.group(1))["model_id"] if found else ""
            except (json.JSONDecodeError, KeyError):
                model_id = ""
            node.children = [nodes.raw("", widget_still(model_id, state, hint), format="html")]


class FolderLinks(SphinxPostTransform):
    """A Markdown link to a folder (``[solutions](solutions/)``, as the notebooks' README has) goes to
    that folder's index page, as it does when the folder is browsed (before MyST resolves links, 9)."""

    default_priority = 8

    def run(self, **kwargs) -> None:
        for node in list(self.document.findall(addnodes.pending_xref)):
            target = node.get("reftarget", "")
            if node.get("reftype") != "myst" or node.get("refdomain") or not target.endswith("/"):
                continue
            folder = posixpath.dirname(node.get("refdoc", self.env.docname))
            docname = posixpath.normpath(posixpath.join(folder, target, "index"))
            if docname in self.env.all_docs:
                node["refdomain"], node["reftarget"], node["reftargetid"] = "doc", docname, None


class DanglingProblems(SphinxPostTransform):
    """A docstring that is not valid reStructuredText leaves a "problematic" link to its error
    message, and the HTML leaves the message out: keep the text, drop the link that goes nowhere.
    The build still prints the warning, naming the docstring."""

    default_priority = 900
    formats = ("html",)

    def run(self, **kwargs) -> None:
        problems = list(self.document.findall(nodes.problematic))
        present = {i for node in self.document.findall(nodes.Element) for i in node.get("ids", [])} if problems else set()
        for node in problems:
            if node.get("refid") and node["refid"] not in present:
                node.replace_self(nodes.literal(node.astext(), node.astext()))


def drop_widget_state(app, pagename, templatename, context, doctree) -> None:
    """The saved state went into the stills: keep it out of the page (MyST-NB would embed it whole)."""
    data = getattr(app.env, "nb_metadata", {}).get(pagename, {})
    data.get("js_files", {}).pop("ipywidgets_state", None)


def setup(app):
    app.add_config_value("site_results", str(RESULTS), "env")
    app.add_config_value("site_execution", "", "env")
    app.connect("config-inited", on_config_inited)
    app.add_directive("results-table", ResultsTable)
    app.add_role("result", result_role)
    app.add_post_transform(WidgetStills)
    app.add_post_transform(FolderLinks)
    app.add_post_transform(DanglingProblems)
    app.connect("html-page-context", drop_widget_state, priority=400)
    # env_version: bump when what the directives render changes, so that Sphinx rereads every page.
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
