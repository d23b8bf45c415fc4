"""The models side by side on the development suite: which one should a practitioner train, if any?

Per suite set and seed: SimpleNet's CPU default, the nearest-neighbour baseline on the same frozen
features (:class:`simplenet_edu.course.baselines.NearestNeighbourBaseline`, nothing trained),
SuperSimpleNet's CPU default, and SimpleNet with painted fakes (``fakes="painted"``,
``image_score="topk"``: :mod:`simplenet_edu.simplenet.anomaly_generator_painted`). Image AUROC, pixel
AUROC, AUPRO, the fit time per training image, the inference time per image, and the memory the
model keeps besides the backbone (the baseline's bank against the trained heads)::

    python -m benchmarks.suite_models --seeds 0 1 2 --output results/suite_models

Where a model and its default are those of a saved suite run (``results/suite_default.json``,
``results/suite_supersimplenet.json``), its rows are read from it (``--reuse``, the default) instead of
trained again; the others run here, in this process, with the saved runs' protocol: one held-out split
of the training images (``threshold_folds=0``) and the last step. The times of rows made on different
days and loads compare only roughly; ``--timing-reference`` also runs SimpleNet's default at the first
seed here, so that the painted fakes' cost is a ratio of two fits made side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (RESULTS, SUITE, SUITE_DIR, cell, command, find_sets, made_by, seeds_note, spread,
                               write_json, write_md_json)
from simplenet_edu.course.baselines import NearestNeighbourBaseline
from simplenet_edu.evaluation.evaluator import evaluate
from simplenet_edu.simplenet.config import SimpleNetConfig
from simplenet_edu.simplenet.model import SimpleNet
from simplenet_edu.stages.backbones import load_backbone

MODELS = {
    "simplenet": "SimpleNet, CPU default",
    "nearest_neighbour": "nearest neighbour (10 % coreset), same features",
    "supersimplenet": "SuperSimpleNet, CPU default",
    "painted": "SimpleNet, painted fakes + top-10 image score",
}
SAVED = {"simplenet": "suite_default.json", "supersimplenet": "suite_supersimplenet.json"}
METRICS = ("image_auroc", "pixel_auroc", "aupro", "fit_ms_per_train_image", "ms_per_image_inference")
PAINTED = {"fakes": "painted", "image_score": "topk", "topk": 10}


def kept_bytes(module_parts) -> int:
    """Bytes of the parameters and buffers of ``module_parts`` (what a checkpoint keeps besides the backbone)."""
    return int(sum(t.numel() * t.element_size() for part in module_parts if part is not None
                   for t in part.state_dict().values()))


def heads_bytes(kind: str, backbone) -> int:
    """Memory of a default model's trained parts: built, not trained (their size does not depend on the data)."""
    if kind == "supersimplenet":
        from simplenet_edu.supersimplenet.config import SuperSimpleNetConfig
        from simplenet_edu.supersimplenet.model import SuperSimpleNet
        model = SuperSimpleNet(SuperSimpleNetConfig(device="cpu"), backbone=backbone)
    else:
        model = SimpleNet(SimpleNetConfig(device="cpu"), backbone=backbone)
    return kept_bytes(getattr(model, part, None) for part in model.parts)


def train_count(folder: Path) -> int:
    return sum(1 for p in (folder / "train" / "good").iterdir() if p.is_file())


def saved_runs(kind: str, folders: dict[str, Path], seeds: list[int]) -> dict[str, list[dict]]:
    """A saved suite run's rows, with the fit time per training image (features + training over the
    images of ``train/good``)."""
    saved = json.loads((RESULTS / SAVED[kind]).read_text())
    runs = {}
    for name, folder in folders.items():
        rows = [r for r in saved["runs"].get(name, []) if r["seed"] in seeds]
        for row in rows:
            row["fit_ms_per_train_image"] = 1000 * (row["seconds_features"] + row["seconds_train"]) / train_count(folder)
        runs[name] = rows
    return runs


def run_here(kind: str, folder: Path, seed: int, backbone) -> dict:
    """One fit and evaluate in this process: the baseline, SimpleNet's default or the painted fakes
    (one held-out split, no validation checkpoints: the saved runs' protocol)."""
    recipe = PAINTED if kind == "painted" else {}
    config = SimpleNetConfig(device="cpu", seed=seed, threshold_folds=0, **recipe)
    start = time.perf_counter()
    if kind == "nearest_neighbour":
        model = NearestNeighbourBaseline(config, backbone=backbone).fit(folder)
    else:
        model = SimpleNet(dataclasses.replace(config, val_checkpoints=0), backbone=backbone).fit(folder, progress=False)
    seconds_fit = time.perf_counter() - start
    result = evaluate(model, folder, progress=False)
    kept = model.bank.numel() * model.bank.element_size() if kind == "nearest_neighbour" else \
        kept_bytes(getattr(model, part, None) for part in model.parts)
    row = {"seed": seed, **{k: result.metrics.get(k) for k in ("image_auroc", "pixel_auroc", "aupro")},
           "seconds_fit": seconds_fit, "fit_ms_per_train_image": 1000 * seconds_fit / train_count(folder),
           "ms_per_image_inference": result.ms_per_image, "kept_bytes": kept,
           "timings": {k: v for k, v in model.timings.items() if isinstance(v, (int, float))}}
    print(f"  {kind} {folder.name} seed {seed}: " + ", ".join(
        f"{k} {row[k]:.3f}" for k in METRICS if row.get(k) is not None), file=sys.stderr, flush=True)
    return row


def summarise(runs: dict[str, list[dict]]) -> dict:
    per_set = {name: {key: spread([r.get(key) for r in rows if r.get(key) is not None]) if rows else None
                      for key in METRICS} for name, rows in runs.items()}
    mean = {key: float(np.mean([s[key][0] for s in per_set.values() if s.get(key)]))
            for key in METRICS if any(s.get(key) for s in per_set.values())}
    return {"per_set": per_set, "mean": mean}


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e6 else f"{n_bytes / 1e3:.0f} kB"


def markdown(records: dict, names: list[str], seeds: list[int], recorded: str, reused: list[str],
             reference: dict | None, nn_seeds: list[int] | None = None) -> str:
    lines = [f"# The models on the development suite\n",
             f"{made_by(recorded)}. "
             + (f"Rows of {', '.join(MODELS[k] for k in reused)} are read from the saved suite runs "
                f"({', '.join('`results/' + SAVED[k] + '`' for k in reused)}: the same model and default, the real "
                "`simplenet-edu evaluate`, seeds 0-2); the others ran in this process. " if reused else "")
             + "Every row: one held-out split of the training images sets the thresholds, the last step is kept. "
             "Fit ms per training image: backbone features and training (the baseline: its bank and coreset) over "
             "the images of `train/good`; the rows made on other days ran at another load, so their times "
             "compare only roughly. Memory kept: what the model holds besides the frozen backbone.\n",
             seeds_note(seeds) + (f" The nearest-neighbour rows: seed{'s' * (len(nn_seeds) > 1)} "
                                  f"{', '.join(map(str, nn_seeds))}." if nn_seeds and nn_seeds != seeds else "") + "\n",
             "| set | model | image AUROC | pixel AUROC | AUPRO | fit ms / training image | inference ms / image "
             "| memory kept |", "|---|---|---|---|---|---|---|---|"]
    for name in names:
        for kind, record in records.items():
            s = record["summary"]["per_set"].get(name)
            if not s:
                continue
            lines.append(f"| {name} | {MODELS[kind]} | {cell(s['image_auroc'])} | {cell(s['pixel_auroc'])} "
                         f"| {cell(s['aupro'])} | {cell(s['fit_ms_per_train_image'], 0)} "
                         f"| {cell(s['ms_per_image_inference'], 0)} | {_size(record['kept_bytes'][name])} |")
    for kind, record in records.items():
        m = record["summary"]["mean"]
        lines.append(f"| **mean** | **{MODELS[kind]}** | **{m['image_auroc']:.3f}** | **{m.get('pixel_auroc', float('nan')):.3f}** "
                     f"| **{m.get('aupro', float('nan')):.3f}** | **{m['fit_ms_per_train_image']:.0f}** "
                     f"| **{m['ms_per_image_inference']:.0f}** | |")
    lines.append("\nA mean row averages the per-set means (pixel metrics over the sets that have masks).")
    if reference:
        lines.append("\nSide by side in this process, seed " + str(seeds[0]) + " (fit seconds, painted fakes / "
                     "default): " + ", ".join(f"{name} {r['painted']:.1f} / {r['simplenet']:.1f} = "
                                                f"{r['painted'] / r['simplenet']:.2f}x" for name, r in reference.items())
                     + ".")
    return "\n".join(lines) + "\n"


def render(path: Path) -> None:
    """The table of a saved run; a run cut short (``.partial.json``) gets its summaries here, and its
    models that never started are left out."""
    saved = json.loads(path.read_text())
    records = {}
    for kind, record in saved["records"].items():
        record["runs"] = {name: rows for name, rows in record["runs"].items() if rows}
        if record["runs"]:
            records[kind] = record
    for record in records.values():
        record["summary"] = summarise(record["runs"])
        if "kept_bytes" not in record:
            record["kept_bytes"] = {name: float(np.mean([r["kept_bytes"] for r in rows]))
                                    for name, rows in record["runs"].items()}
    names = [n for n in SUITE if any(n in r["runs"] for r in records.values())]
    nn = records.get("nearest_neighbour")
    seeds = saved.get("seeds") or sorted({r["seed"] for record in records.values() if record is not nn
                                          for rows in record["runs"].values() for r in rows})
    nn_seeds = sorted({r["seed"] for rows in nn["runs"].values() for r in rows}) if nn else None
    reused = [kind for kind, record in records.items() if record.get("source") in SAVED.values()]
    records = {kind: records[kind] for kind in MODELS if kind in records}
    text = markdown(records, names, seeds, saved["command"], reused, saved.get("timing_reference") or None, nn_seeds)
    print(text)
    output = path.with_name(path.name.replace(".partial.json", ".json"))
    write_md_json(output, text, {**saved, "records": records}, indent=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--suite", type=Path, default=SUITE_DIR)
    parser.add_argument("--sets", nargs="*", help="only these sets")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--nn-seeds", type=int, nargs="+",
                        help="seeds of the nearest-neighbour rows (default: --seeds; its coreset is slow on a busy CPU)")
    parser.add_argument("--no-reuse", dest="reuse", action="store_false",
                        help="train every model here, even those with a saved suite run")
    parser.add_argument("--timing-reference", action="store_true",
                        help="also fit SimpleNet's default here at the first seed, right after the painted fakes' fit")
    parser.add_argument("--output", type=Path, help="results/NAME: writes NAME.md and NAME.json")
    parser.add_argument("--resume", type=Path,
                        help="a NAME.partial.json of a run cut short: its finished models are kept, the rest run")
    parser.add_argument("--render", type=Path,
                        help="re-print a saved run (NAME.json, or the NAME.partial.json of a run cut short) and "
                             "write NAME.md / NAME.json from it, no training")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.render:
        render(args.render)
        return
    folders, skipped = find_sets(args.suite, demo=False, names=args.sets)
    for line in skipped:
        print(f"suite_models: {line}", file=sys.stderr)
    if not folders:
        sys.exit("suite_models: no data sets found")
    names = [n for n in SUITE if n in folders]
    recorded = command("suite_models", argv)
    torch.manual_seed(0)
    backbone = load_backbone(SimpleNetConfig().backbone)
    records, reused, reference = {}, [], {}
    if args.resume:
        done = json.loads(args.resume.read_text())["records"]
        for kind, record in done.items():
            if all(len(record["runs"].get(name, [])) == len(args.seeds) for name in names) and kind != "nearest_neighbour":
                records[kind] = record
                if "kept_bytes" not in record:
                    record["kept_bytes"] = {name: float(np.mean([r["kept_bytes"] for r in record["runs"][name]]))
                                            for name in names}
                record["summary"] = summarise(record["runs"])
                if kind in SAVED:
                    reused.append(kind)
    for kind in args.models:
        if kind in records:
            continue
        if args.reuse and kind in SAVED:
            runs, kept = saved_runs(kind, folders, args.seeds), heads_bytes(kind, backbone)
            records[kind] = {"runs": runs, "kept_bytes": {name: kept for name in names}, "source": SAVED[kind]}
            reused.append(kind)
        elif kind == "supersimplenet":
            sys.exit("suite_models: SuperSimpleNet runs through benchmarks.suite (--name supersimplenet); "
                     "keep --reuse")
        else:
            runs = {}
            records[kind] = {"runs": runs, "source": "this run"}
            for name in names:
                seeds = args.nn_seeds if kind == "nearest_neighbour" and args.nn_seeds else args.seeds
                runs[name] = []
                for seed in seeds:
                    runs[name].append(run_here(kind, folders[name], seed, backbone))
                    if args.output:   # every finished run kept: a run cut short still leaves its numbers
                        write_json(args.output.with_suffix(".partial.json"), {"command": recorded, "seeds": args.seeds,
                                                                             "models": MODELS, "records": records},
                                   indent=1)
                if kind == "painted" and args.timing_reference:    # right after the painted fit of the same seed
                    default = run_here("simplenet", folders[name], args.seeds[0], backbone)
                    reference[name] = {"simplenet": default["seconds_fit"], "painted": runs[name][0]["seconds_fit"]}
            records[kind]["kept_bytes"] = {name: float(np.mean([r["kept_bytes"] for r in runs[name]])) for name in names}
        records[kind]["summary"] = summarise(records[kind]["runs"])
    records = {kind: records[kind] for kind in MODELS if kind in records}     # the table's order, whatever ran first
    text = markdown(records, names, args.seeds, recorded, reused, reference or None, args.nn_seeds)
    print(text)
    if args.output:
        write_md_json(args.output, text, {"command": recorded, "seeds": args.seeds, "models": MODELS,
                                          "records": records, "timing_reference": reference}, indent=1)
        args.output.with_suffix(".partial.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
