"""The ``simplenet-edu`` command line: ``demo``, ``train``, ``evaluate``, ``predict``, ``export``, ``ablate``
and ``benchmark``.

A user's mistake (a missing folder, a broken image, a foreign checkpoint) prints one line,
``simplenet-edu: error: <path>: <problem>``, and exits with code 2. No stack trace.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from ..deploy.heatmaps import MAP_SIZES, NORMALISED_FORMULA
from ..deploy.runtime import DEFAULT_TOLERANCE
from ..evaluation.report import calibration_text, print_report, run_report
from ..utils.atomic import check_writable, write_text
from ..utils.errors import DataWarning, InputError
from .engines import DEFAULT_RAY_CPUS, RAY_RETRIES
from .help_text import BENCHMARK_HELP, EXPORT_HELP, PREDICT_HELP
from .options import add_model_options, build_config

DEFAULT_SEEDS = (0, 1, 2)       # benchmark: the seeds of every category

COMMON_HELP = "Train SimpleNet on normal images and find anomalies, on a CPU or a GPU."


def _check(root: Path, config=None, need_train: bool = True, need_test: bool = False) -> None:
    """The whole folder checked before any model work: every problem, one line each (data.check_dataset)."""
    from .. import data as data_lib

    sizes = {} if config is None else dict(image_size=config.image_size, crop_size=config.crop_size,
                                           backbone=config.backbone)
    data_lib.check_dataset(root, need_train=need_train, need_test=need_test, **sizes)


def _train(args, root: Path, need_test: bool = False):
    from ..core.registry import model_class

    config = build_config(args)
    _check(root, config, need_test=need_test)  # before the backbone is even loaded
    return model_class(getattr(args, "model", "simplenet"))(config).fit(root, progress=not args.quiet)


def cmd_train(args) -> int:
    check_writable(args.output)   # a folder that cannot take the model fails now, not after training
    model = _train(args, Path(args.data))
    model.save(args.output)
    print(f"trained on {model.n_train} images of {args.data} ({model.n_holdout} held out); "
          f"model written to {args.output}")
    if model.threshold_normal is not None:
        calibration = getattr(model, "calibration", None)
        print(f"threshold from normal images: {model.threshold_normal:.4f} ({calibration_text(calibration)})")
        if calibration and calibration.get("warning"):
            print(f"warning: {calibration['warning']}")
    return 0


def cmd_evaluate(args) -> int:
    from ..evaluation.evaluator import evaluate
    from ..core.registry import load_model

    root = Path(args.data)
    if args.output:
        check_writable(args.output)
    if args.checkpoint:
        _check(root, need_train=False, need_test=True)
        model = load_model(args.checkpoint, device=args.device)   # either model: the file says which
    else:
        model = _train(args, root, need_test=True)
    result = evaluate(model, root, progress=not args.quiet)
    report = run_report(model, result)
    print_report(report)
    if args.output:
        write_text(Path(args.output), json.dumps(report, indent=2) + "\n")
        print(f"results written to {args.output}")
    return 0


def _chunks(items, size: int):
    """Lists of up to ``size`` consecutive items."""
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _predictor(args):
    """``(calibration, (resize_shape, image_shape), predict)`` for the model file: an ``.onnx`` export
    runs under onnxruntime without importing torch; anything else is a torch checkpoint. ``predict``
    maps a ``[B, 3, H, W]`` float32 array to numpy scores ``[B]`` and maps ``[B, H, W]``."""
    model_path = Path(args.model or args.checkpoint)
    if model_path.suffix.lower() == ".onnx":
        from ..deploy.runtime import OnnxModel

        model = OnnxModel(model_path)
        return model.calibration, (model.resize_shape, model.image_shape), model.predict
    import torch

    from ..core.registry import load_model
    from ..deploy.heatmaps import Calibration

    model = load_model(model_path, device=args.device)   # SimpleNet or SuperSimpleNet: the file says which

    def predict(batch):
        scores, maps = model.predict(torch.from_numpy(batch))
        return scores.numpy(), maps.numpy()

    return Calibration.of_model(model), (model.resize_shape, model.image_shape), predict


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def cmd_predict(args) -> int:
    import numpy as np

    # Torch-free for both model files: the reader of deploy.runtime gives the same pixels as data's.
    from ..deploy.heatmaps import PredictionWriter, heatmap_names
    from ..deploy.runtime import folders_with_images, iter_images, list_images
    from ..utils.atomic import check_writable, remove_temps

    folder, out_dir = Path(args.images), Path(args.output_dir)
    skip = [out_dir] if out_dir.exists() and _inside(out_dir, folder) else []   # a previous run's heat maps
    # A missing or empty folder, or an output folder that cannot be written, fails before the model loads.
    paths = list_images(folder, recursive=args.recursive, skip=skip)
    check_writable(out_dir, folder=True)
    remove_temps(out_dir)   # what a run killed outright left half-written; nothing else reads it
    if not args.recursive:
        unread = folders_with_images(folder, skip=skip)
        if unread:
            print(f"simplenet-edu: warning: {folder}: {len(unread)} subfolder{'s' * (len(unread) > 1)} with images "
                  f"not read (--recursive scores every image below the folder)", file=sys.stderr)
    calibration, shapes, predict = _predictor(args)
    writer = PredictionWriter(out_dir, calibration, overlay=args.overlay, shapes=shapes, map_size=args.map_size,
                              names=heatmap_names(paths, folder if args.recursive else None))
    items = iter_images(folder, *shapes, paths=paths, originals=args.map_size == "image")
    try:
        # A batch at a time, each result written as it comes: memory does not grow with the folder, and
        # scores.csv holds every image scored so far. A file that cannot be read is listed (CSV and
        # stderr) and the others are still scored.
        for chunk in _chunks(items, 8):
            good = [item[1] for item in chunk if not isinstance(item[1], InputError)]
            results = iter(zip(*predict(np.stack(good)))) if good else iter(())
            for path, image, *original in chunk:
                if isinstance(image, InputError):
                    print(f"simplenet-edu: error: {image}", file=sys.stderr)
                    writer.add_error(path, image.problem)
                    continue
                score, amap = next(results)
                writer.add(path, image.transpose(1, 2, 0), score, amap, original[0] if original else None)
    finally:
        table = writer.close()
    kind = "heat maps" if args.overlay else "raw 16-bit maps"
    size = "at each image's own size" if args.map_size == "image" else "at the model's input size"
    print(f"{writer.scored} images scored; {kind} ({size}) and {table.name} in {writer.out}")
    if calibration.threshold is not None:
        print(f"'anomalous' uses the threshold from normal training images: {calibration.threshold:.4f}")
    if calibration.image([0.0]) is not None:
        print(f"'normalised_score' = {NORMALISED_FORMULA} with threshold {calibration.threshold:.4f}, "
              f"spread {calibration.score_spread:.4f}: 0.5 at the threshold")
    if writer.failed:
        print(f"simplenet-edu: error: {writer.failed} of {writer.rows} images could not be read (listed above and "
              f"in {table}, column 'error')", file=sys.stderr)
        return 2
    return 0


def cmd_export(args) -> int:
    from ..deploy.export import export_onnx, read_evaluation

    from ..core.registry import load_model

    check_writable(args.output)
    model = load_model(args.checkpoint, device="cpu")   # either class; export refuses one it cannot export
    images = None
    if args.images:
        import torch

        from .. import data as data_lib

        paths = data_lib.require_images(args.images)[: args.n_images]
        images = torch.stack([data_lib.load_image(p, model.resize_shape, model.image_shape) for p in paths])
    evaluation = read_evaluation(args.evaluation, model) if args.evaluation else None
    report = export_onnx(model, args.output, images=images, tolerance=args.tolerance, exporter=args.exporter,
                         evaluation=evaluation)
    source = f"the images of {args.images}" if args.images else "random images"
    print(f"model written to {report.path} ({report.path.stat().st_size / 1e6:.1f} MB, {report.exporter} exporter)")
    print(f"checked on {report.n_images} {source}: onnxruntime - torch at most {report.max_score_difference:.2g} "
          f"on scores, {report.max_map_difference:.2g} on maps (tolerance {report.tolerance:g})")
    if model.threshold_normal is not None:
        print(f"thresholds in its metadata: normal {model.threshold_normal:.4f}, pixel {model.pixel_threshold_normal:.4f}"
              + (f", F1 (chosen on the test set) {evaluation['threshold_f1']:.4f}" if evaluation else ""))
    return 0


def cmd_demo(args) -> int:
    from ..data import make_demo_dataset
    from ..evaluation.evaluator import evaluate
    from ..course.viz import save_examples_figure

    check_writable(args.figure)
    root = make_demo_dataset(args.root, category=args.category, seed=args.seed)
    start = time.perf_counter()
    model = _train(args, root, need_test=True)
    result = evaluate(model, root, progress=not args.quiet)
    print(f"demo set: {root} (trained and evaluated in {time.perf_counter() - start:.0f} s)")
    print_report(run_report(model, result))
    figure = save_examples_figure(result, Path(args.figure))
    print(f"figure of images, heat maps and masks written to {figure}")
    return 0


def cmd_ablate(args) -> int:
    from .ablation import all_variants, header, run_ablation, to_markdown

    if args.seeds < 1:
        raise InputError("--seeds", "must be a positive integer")
    if args.model != "simplenet":
        raise InputError("--model", "ablate changes SimpleNet's parts; it has no SuperSimpleNet rows")
    config = build_config(args)
    variants = args.variants.split(",") if args.variants else None
    for suffix in (".md", ".json"):
        check_writable(Path(args.output).with_suffix(suffix))
    _check(Path(args.data), config, need_test=True)
    rows = run_ablation(Path(args.data), args.seeds, config, variants=variants, progress=not args.quiet)
    output = Path(args.output)
    write_text(output.with_suffix(".md"), header(Path(args.data), args.command_line, config, rows) + to_markdown(rows))
    write_text(output.with_suffix(".json"), json.dumps(
        {"command": args.command_line, "data": str(args.data), "config": config.to_dict(),
         "variants": [f"{p}={n}" for p, n in all_variants(config)] if variants is None else variants,
         "rows": rows}, indent=2) + "\n")
    print(to_markdown(rows))
    print(f"table written to {output.with_suffix('.md')} and {output.with_suffix('.json')}")
    return 0


def cmd_benchmark(args) -> int:
    from .benchmark import run_benchmark, to_markdown

    if args.seed is not None:
        raise InputError("--seed", "benchmark runs every seed of --seeds (--seeds 0 1 2)")
    table = run_benchmark(
        Path(args.data), Path(args.output), build_config(args), seeds=args.seeds,
        categories=args.categories.split(",") if args.categories else None,
        model_kind=getattr(args, "model", None) or "simplenet", workers=args.workers, ray_address=args.ray,
        gpus_per_job=args.gpus_per_job, cpus_per_job=args.cpus_per_job, ray_retries=args.retries,
        progress=not args.quiet,
        command=args.command_line)
    print(to_markdown(table))
    output = Path(args.output)
    print(f"{table['ran']} jobs run in {table['wall_seconds']:.0f} s, {table['skipped']} results reused; table written "
          f"to {output / 'table.md'} and {output / 'table.json'}; one result per job in {output / 'jobs'}")
    if table["jobs"]["failed"]:
        print(f"simplenet-edu: {table['jobs']['failed']} of {table['jobs']['total']} jobs failed "
              f"(their errors are in the table); a rerun retries them", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simplenet-edu", description=COMMON_HELP)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="make the demo data set, train, evaluate and draw a figure")
    demo.add_argument("--root", default="data/demo", help="where the demo data set is written (default %(default)s)")
    demo.add_argument("--category", default="brick", choices=["brick", "gravel", "grass"],
                      help="the texture photograph it paints (default %(default)s)")
    demo.add_argument("--figure", default="demo.png", help="figure file to write (default %(default)s)")
    add_model_options(demo)
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser("train", help="train on DIR/train/good and save the model")
    train.add_argument("--data", required=True, help="MVTec-layout folder (DIR/train/good)")
    train.add_argument("--output", default="simplenet.pt", help="checkpoint file to write (default %(default)s)")
    add_model_options(train)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="train on DIR/train/good, score DIR/test, report metrics")
    evaluate.add_argument("--data", required=True, help="MVTec-layout folder")
    evaluate.add_argument("--checkpoint", help="evaluate this saved model instead of training one")
    evaluate.add_argument("--output", help="JSON file for the results")
    add_model_options(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    predict = sub.add_parser("predict", help="score a folder of images with a saved or exported model",
                             description=PREDICT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = predict.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="model.onnx (from export; runs under onnxruntime, without torch) or a "
                                       "checkpoint model.pt")
    which.add_argument("--checkpoint", help="a checkpoint model.pt (as --model)")
    predict.add_argument("--images", required=True, help="folder of images")
    predict.add_argument("--recursive", action="store_true",
                         help="every image below --images too, heat maps under the same relative paths")
    predict.add_argument("--output-dir", default="predictions", help="(default %(default)s)")
    predict.add_argument("--overlay", action=argparse.BooleanOptionalAction, default=True,
                         help="heat maps over the images (default); --no-overlay: raw maps as 16-bit PNGs")
    predict.add_argument("--map-size", choices=MAP_SIZES, default="image",
                         help="image: each map at its image's own size and aspect ratio (default); model: at "
                              "the model's input size")
    predict.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                         help="for a checkpoint (default %(default)s; an ONNX model runs on the CPU)")
    predict.set_defaults(func=cmd_predict)

    export = sub.add_parser("export", help="write a trained model as ONNX, checked against torch",
                            description=EXPORT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("--checkpoint", required=True, help="model.pt from simplenet-edu train")
    export.add_argument("--output", default="model.onnx", help="ONNX file to write (default %(default)s)")
    export.add_argument("--images", help="folder of images to check the export on (default: random images)")
    export.add_argument("--n-images", type=int, default=8, help="at most this many of them (default %(default)s)")
    export.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="largest |onnxruntime - torch| allowed on any score or map value (default %(default)g)")
    export.add_argument("--exporter", choices=["torchscript", "dynamo"], default="torchscript",
                        help="torchscript: torch's TorchScript-based exporter (the default); dynamo: the "
                             "torch.export-based one (needs onnxscript)")
    export.add_argument("--evaluation", metavar="JSON", help="results.json of evaluate --checkpoint on this "
                        "model: its F1 threshold goes into the metadata too")
    export.set_defaults(func=cmd_export)

    ablate = sub.add_parser("ablate", help="change one part at a time from the chosen configuration; table of metrics")
    ablate.add_argument("--data", required=True, help="MVTec-layout folder")
    ablate.add_argument("--seeds", type=int, default=3, help="seeds per row, from --seed on (default %(default)s)")
    ablate.add_argument("--output", default="ablation", help="writes FILE.md and FILE.json")
    ablate.add_argument("--variants", help="comma-separated part=choice list (default: every variant)")
    add_model_options(ablate)
    ablate.set_defaults(func=cmd_ablate)

    bench = sub.add_parser("benchmark", help="every category of a data set over seeds, on local workers or "
                           "Ray; a paper-style table", description=BENCHMARK_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("--data", required=True, metavar="ROOT",
                       help="folder of MVTec-layout category folders (as MVTec AD unpacks); with --ray, a "
                            "path every node sees")
    bench.add_argument("--categories", help="comma-separated category folders (default: every folder in ROOT)")
    bench.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS),
                       help=f"seeds of every category (default: {' '.join(map(str, DEFAULT_SEEDS))})")
    bench.add_argument("--output", required=True, metavar="DIR", help="folder for the results and the table; "
                       "a rerun resumes")
    engine = bench.add_argument_group("engine")
    where = engine.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=1,
                       help="local worker processes (default %(default)s: this process)")
    where.add_argument("--ray", metavar="ADDRESS", help="auto or HOST:PORT of a running Ray cluster")
    engine.add_argument("--gpus-per-job", type=float, default=1.0,
                        help="Ray: GPUs each job asks for on a GPU cluster (0.5: two jobs per GPU; default %(default)g)")
    engine.add_argument("--retries", type=int, default=RAY_RETRIES,
                        help="Ray: times a job runs again when its worker dies (default %(default)s)")
    engine.add_argument("--cpus-per-job", type=float,
                        help="Ray: CPUs each job asks for and its torch threads (default 1 with GPUs, else "
                             f"{DEFAULT_RAY_CPUS} or the largest node's CPUs if fewer)")
    add_model_options(bench, every_seed=True)
    bench.set_defaults(func=cmd_benchmark)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = "simplenet-edu " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            return args.func(args)
    except InputError as error:
        for line in error.lines():  # a data check lists every problem it found, one per line
            print(f"simplenet-edu: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Every output is written under a temporary name and renamed when complete, and the
        # temporary file is removed on the way out: nothing half-written stays behind.
        _close_progress_bars()
        print("simplenet-edu: interrupted", file=sys.stderr)
        return 130


def _one_line_warnings(show):
    """A DataWarning (no masks: no pixel metrics...) as one line; any other warning as ``show`` shows it."""
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DataWarning):
            print(f"simplenet-edu: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)
    return showwarning


def _close_progress_bars() -> None:
    """End the line of a progress bar cut short, so that the last message starts a line of its own."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        # Ctrl-C within a bar's first display, before tqdm records it, makes close() print nothing.
        unfinished = not getattr(bar, "disable", True) and not hasattr(bar, "last_print_t")
        bar.close()
        if unfinished:
            bar.fp.write("\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
