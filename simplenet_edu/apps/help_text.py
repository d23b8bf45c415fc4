"""The long help texts of ``simplenet-edu benchmark``, ``predict`` and ``export`` (``--help``)."""

from ..deploy.heatmaps import NORMALISED_FORMULA, RAW_MAP_FORMULA
from ..utils.stats import MEAN_STD_NOTE


BENCHMARK_HELP = f"""\
One job per (category, seed): train on ROOT/<category>/train/good, evaluate on ROOT/<category>/test.
Each job's result is written atomically to DIR/jobs/<category>/seed<k>.json as it finishes; DIR/table.md
and DIR/table.json are rewritten after every job: per category {MEAN_STD_NOTE},
over the seeds; the mean row; the seconds per job. A rerun skips the jobs whose result matches the
configuration, so an interrupted run loses only the jobs in flight; after a run killed outright, its
temporary files are removed and a result file cut short is reported and its job run again. A broken
category is reported in the table with its error; the other jobs finish (exit code 1 if any job
failed). A result or table that cannot be written (a full disk) stops the run with one line, exit
code 2.

Engines: --workers N local processes (torch threads divided between them; with several GPUs, worker i
uses GPU i mod n), or --ray auto|HOST:PORT, one Ray task per job on a running cluster
(`ray start --head` on the head node; needs pip install -e ".[cluster]"). With Ray, every node reads
the data itself: ROOT must be a path that all nodes see (a shared file system) and every node needs
simplenet-edu installed; only this machine writes DIR. A Ray job whose worker dies (killed, out of
memory, a lost node) runs again, up to --retries times, then its error goes into the table while the
other jobs finish.
"""


PREDICT_HELP = f"""\
Writes, in --output-dir, one PNG per image and scores.csv, each as its image is scored.

Images: those directly in --images; --recursive: every image below it too, each PNG under the same
relative path (a/part.png -> a/part_heatmap.png). Without --recursive, a warning counts the subfolders
with images that were not read.

PNG (default): the image under its anomaly map (jet colours: green at the pixel threshold from normal
training images, red above), a white contour around the pixels at or above that threshold, and the
normalised score in the corner, on red when the image is anomalous. --no-overlay: the raw map as a
16-bit grayscale PNG, {RAW_MAP_FORMULA},
with map_min and map_max in scores.csv and in the PNG's text chunks. Each map is drawn at its image's
own size and aspect ratio, taken back through the resize and crop the model applied (a margin the crop
cut away is pale grey in the PNG, outside 'scored_box' in a raw map: not scored); --map-size model
keeps the model's input size instead.

scores.csv: path, score (raw), normalised_score, anomalous (yes/no at the threshold from normal
training images), heatmap (the PNG's path in --output-dir), map_min, map_max, error (why an image could
not be read). Written row by row: a run cut short keeps every image scored up to there. A text cell
that begins with =, +, -, @, a tab or a carriage return is written with a leading apostrophe (') so
that spreadsheets show it as text instead of running it; numbers are written as they are.

  normalised_score = {NORMALISED_FORMULA}

threshold: the normal threshold; spread: 1.4826 x the median absolute deviation of the scores of the
normal images the model was fitted on. It reads 0.5 at the threshold (so >= 0.5 is 'anomalous'), 0.9
one spread above, 0.1 one spread below.

A file that cannot be written (a full disk, no permission, a parent that is a file) stops the run with
one line naming it and the reason, exit code 2; no half-written or temporary file stays behind.
"""

EXPORT_HELP = """\
Exports the whole inference path (images [B, 3, H, W] RGB in [0, 1] -> scores [B], maps [B, H, W];
normalisation, upsampling and smoothing inside; dynamic batch axis) as ONNX, with the thresholds, the
normalised-score anchors and the configuration in its metadata. Before writing, onnxruntime and torch
score the same images; when any score or map value differs by more than --tolerance the export is
refused (one line, exit code 2) and nothing is written. Run the file with
`simplenet-edu predict --model model.onnx` (needs only onnxruntime: pip install "simplenet-edu[onnx]").
"""
