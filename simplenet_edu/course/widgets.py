"""Choose a threshold and see what it costs: the :class:`ThresholdExplorer` widget.

A trained model gives every test image a score and every pixel a score. To inspect parts, one must
turn scores into decisions with a threshold per level, and every threshold trades missed defects
against false alarms. The explorer shows that trade live, for an
:class:`~simplenet_edu.evaluation.evaluator.EvaluationResult`:

- an image-level threshold slider, with buttons that snap it to the F1-max threshold (picked on the
  test labels: optimistic) and to the threshold from normal training images (honest). Its stops are
  the exact thresholds that matter: every distinct test score, the two thresholds, and one value just
  above the highest score (nothing flagged). So one arrow-key press changes the decision for exactly
  one score level, and what the slider shows is the threshold used, never a rounded neighbour;
- the score histograms of normal and anomalous test images, with the threshold drawn on them;
- the confusion matrix, precision, recall, F1 and false-positive rate, and the misses per defect type;
- a pixel-level threshold slider (200 even steps over the map range, plus the exact pixel threshold
  from normal images, where it starts), and a grid of test images with the predicted regions (red) drawn
  over the ground truth (green, dashed);
- a defect-type filter: the counts then cover the normal images and that defect type only.

Everything it shows is also plain data in :meth:`ThresholdExplorer.summary`, so it can be tested
and asserted on without a browser. Usage in a notebook::

    from simplenet_edu.course.widgets import explore
    explore(result)
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np

from ..evaluation import metrics
from ..utils.errors import InputError
from .explorer_parts import at_least, checked_result, encode_figure, metric_html, selection_options, shown_images
from .viz import plot_score_histograms

ALL_DEFECTS = "all"
PREDICTED_COLOUR = "red"
TRUTH_COLOUR = "lime"
_PIXEL_STEPS = 200  # the pixel slider's arrows move 1/200 of the map range: fine enough, few enough to sweep
_DPI = 80


# ----------------------------------------------------------------------------- the widget


class ThresholdExplorer(widgets.VBox):
    """Live confusion matrix, histograms and contours as image and pixel thresholds move.

    Args:
        result: an :class:`~simplenet_edu.evaluation.evaluator.EvaluationResult` (or any object with its
            fields) of ``N`` test images of ``H x W`` pixels, normal and anomalous.
        n_shown: how many test images the grid shows (1 to 12).
        bins: number of histogram bins over the slider's range.

    The controls are attributes, so code can drive the explorer as a learner would: ``image_slider``,
    ``pixel_slider``, ``defect_filter``, ``snap_f1_button``, ``snap_normal_button``. The numbers shown
    are in ``counts_html``, ``rates_html``, ``misses_html`` and ``pixel_html`` (each number tagged
    ``data-metric="name"``), and in :meth:`summary`. A score (pixel) ``>= threshold`` is anomalous.

    Both sliders are ``SelectionSlider`` widgets whose options are ``(label, exact threshold)`` pairs in
    ascending order, so ``image_slider.value`` is always the exact float applied and can only be set
    to one of ``image_slider.options``; :meth:`threshold_label` gives a stop's label.
    """

    def __init__(self, result, n_shown: int = 8, bins: int = 30):
        super().__init__()
        if not 1 <= int(n_shown) <= 12:
            raise InputError("n_shown", f"must be between 1 and 12, got {n_shown}")
        if int(bins) < 2:
            raise InputError("bins", f"must be at least 2, got {bins}")
        (self._scores, self._labels, self._defect_types, self._maps, self._masks,
         self._images) = checked_result(result)
        # Thresholds are compared in float64: a threshold between two float32 values stays exact.
        self._score_dtype = self._scores.dtype
        self._scores = self._scores.astype(np.float64)
        self._n_shown = int(n_shown)
        self.threshold_normal = None if result.threshold_normal is None else float(result.threshold_normal)
        pixel_threshold_normal = getattr(result, "pixel_threshold_normal", None)
        self._build_controls(pixel_threshold_normal)
        self._build_histogram(int(bins))
        self._build_grid()
        self._pixel_counts_for(float(self.pixel_slider.value))

        self.image_slider.observe(lambda _: self._update_image_level(), names="value")
        self.pixel_slider.observe(lambda _: self._update_pixel_level(), names="value")
        self.defect_filter.observe(lambda _: self._update_selection(), names="value")
        self.snap_f1_button.on_click(lambda _: self._snap_to(self._threshold_f1))
        self.snap_normal_button.on_click(lambda _: self._snap_to(self.threshold_normal))
        self._update_selection()

    # ------------------------------------------------------------------------- construction

    def _build_controls(self, pixel_threshold_normal):
        scores, maps, labels = self._scores, self._maps, self._labels
        # The image slider's stops: every distinct score (each step flips one score level), the
        # F1-max threshold of every defect selection (a score too, kept in case), the threshold from
        # normal images, and the next value above all of these in the scores' own dtype, so that the
        # last stop flags nothing whether the scores are compared in float32 or float64. (The normal
        # threshold can lie above every test score.)
        stops = np.unique(scores).tolist()
        for name in set(self._defect_types[labels].tolist()):
            stops.append(metrics.f1_max(labels[~labels | (self._defect_types == name)],
                                        scores[~labels | (self._defect_types == name)])[1])
        stops.append(metrics.f1_max(labels, scores)[1])
        if self.threshold_normal is not None:
            stops.append(self.threshold_normal)
        top = np.nextafter(self._score_dtype.type(max(stops)), self._score_dtype.type(np.inf))
        stops.append(float(max(top, np.nextafter(max(stops), np.inf))))
        options = selection_options(stops)
        # The last stop flags nothing: say so, whatever digits its neighbour needs.
        options = (*options[:-1], (f"> {options[-2][0].lstrip('> ')}", options[-1][1]))
        self._image_labels = {value: label for label, value in options}
        if self.threshold_normal is not None:
            start = self.threshold_normal
        else:  # the lowest stop at or above the median score: about half the images flagged
            start = next(value for _, value in options if value >= np.median(scores))
        low, high = options[0][1], options[-1][1]
        # A margin beyond the extreme stops for the histogram, so the bars at both ends are visible.
        margin = 0.05 * (high - low) if high > low else 1.0
        self._image_range = (float(low - margin), float(high + margin))
        self.image_slider = widgets.SelectionSlider(
            options=options, value=start, description="image threshold", continuous_update=True,
            style={"description_width": "initial"}, layout=widgets.Layout(width="460px"))

        pixel_low, pixel_high = float(maps.min()), float(maps.max())
        if pixel_high <= pixel_low:
            pixel_high = pixel_low + 1.0
        from_normal = pixel_threshold_normal is not None
        if not from_normal:
            # Without a pixel threshold from normal images, start where 1% of the normal test pixels are flagged.
            pixel_threshold_normal = float(np.quantile(maps[~labels][:, ::4, ::4], 0.99))
        pixel_start = float(pixel_threshold_normal)  # exact, even outside the maps' range
        # Even steps over the map range, plus the exact starting threshold: pixel thresholds are
        # continuous, but the value shown is always the value applied.
        pixel_options = selection_options([*np.linspace(pixel_low, pixel_high, _PIXEL_STEPS + 1), pixel_start])
        self.pixel_slider = widgets.SelectionSlider(
            options=pixel_options, value=pixel_start, description="pixel threshold", continuous_update=True,
            style={"description_width": "initial"}, layout=widgets.Layout(width="460px"),
            tooltip="starts at the pixel threshold from normal training images" if from_normal
            else "starts where 1% of the normal test pixels are flagged (no pixel threshold from normal images)")

        defects = sorted(set(self._defect_types[self._labels].tolist()))
        self.defect_filter = widgets.Dropdown(
            options=[(f"all defect types ({int(self._labels.sum())})", ALL_DEFECTS)]
            + [(f"{name} ({int((self._defect_types[self._labels] == name).sum())})", name) for name in defects],
            value=ALL_DEFECTS, description="defects", layout=widgets.Layout(width="260px"))

        self.snap_f1_button = widgets.Button(
            description="F1-max threshold", icon="bullseye", layout=widgets.Layout(width="auto"),
            tooltip="the threshold with the best F1 on these test images (it peeks at the labels)")
        no_normal = self.threshold_normal is None
        self.snap_normal_button = widgets.Button(
            description="normal-image threshold", icon="check", disabled=no_normal,
            layout=widgets.Layout(width="auto"),
            tooltip="the threshold from normal training images, each scored by heads that never saw it (what a deployment can know)")
        self.normal_note = widgets.HTML(
            "<i>No threshold from normal images in this result: a model fitted on two or more normal "
            "images, with threshold folds or a held-out share, has one.</i>" if no_normal else "")

        self.counts_html = widgets.HTML()
        self.rates_html = widgets.HTML()
        self.misses_html = widgets.HTML()
        self.pixel_html = widgets.HTML()
        self.histogram_image = widgets.Image(format="png")
        self.grid_image = widgets.Image(format="jpeg")
        legend = (f'<span style="color:{PREDICTED_COLOUR}">&#9473; predicted region</span> &nbsp; '
                  + ('<span style="color:green">&#9476; ground truth</span> &nbsp; ' if self._masks is not None
                     else "<i>no ground-truth masks in this result</i> &nbsp; ")
                  + "titles: <span style='color:green'>right decision</span> / "
                  "<span style='color:red'>wrong decision</span> at the image threshold")

        self.children = [
            widgets.HTML("<h3 style='margin:0'>Threshold explorer</h3>"),
            widgets.HBox([self.image_slider, self.snap_f1_button, self.snap_normal_button]),
            widgets.HBox([self.defect_filter, self.normal_note]),
            widgets.HBox([self.histogram_image,
                          widgets.VBox([self.counts_html, self.rates_html, self.misses_html],
                                       layout=widgets.Layout(margin="0 0 0 12px"))]),
            widgets.HBox([self.pixel_slider, self.pixel_html]),
            widgets.HTML(legend),
            self.grid_image,
        ]

    def _build_histogram(self, bins: int):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self._histogram_figure = Figure(figsize=(5.2, 3.0), dpi=_DPI)
        FigureCanvasAgg(self._histogram_figure)
        ax = self._histogram_figure.add_subplot()
        edges = np.linspace(*self._image_range, bins + 1)
        self._histogram = plot_score_histograms(
            self._scores, self._labels, bins=edges, ax=ax,
            thresholds={"F1-max": float(np.median(self._scores)), "from normal images": self.threshold_normal})
        self._threshold_line = ax.axvline(self.image_slider.value, color="black", linewidth=2, label="threshold")
        ax.legend(fontsize=7, loc="upper center", ncols=3, frameon=False)  # in the headroom above the bars
        ax.set_title("normal and anomalous test images", fontsize=9)  # replaced per selection; sized now
        self._histogram_figure.tight_layout()

    def _build_grid(self):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        columns = min(self._n_shown, 4)
        rows = -(-self._n_shown // columns)
        self._grid_figure = Figure(figsize=(2.1 * columns, 2.3 * rows), dpi=_DPI)
        FigureCanvasAgg(self._grid_figure)
        self._grid_axes = [self._grid_figure.add_subplot(rows, columns, slot + 1) for slot in range(self._n_shown)]
        height, width = self._maps.shape[1:]
        # Maps and masks are padded by one pixel so that a region touching the border is still a
        # closed contour; these are the padded pixel centres in imshow's coordinates.
        self._contour_x, self._contour_y = np.arange(-1, width + 1), np.arange(-1, height + 1)
        self._grid_images = []
        for ax in self._grid_axes:
            self._grid_images.append(ax.imshow(np.zeros_like(self._images[0]), cmap="gray", interpolation="nearest"))
            ax.set_xticks([])
            ax.set_yticks([])
        self._grid_figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9, wspace=0.05, hspace=0.3)
        self._shown: list[int] = []
        self._predicted_contours: list = []
        self._truth_contours: list = []
        self._shown_decisions: tuple = ()

    # ------------------------------------------------------------------------- reactions

    def _snap_to(self, threshold: float | None):
        """Select the stop that is exactly this threshold (every snap target is one of the stops)."""
        if threshold is not None:
            self.image_slider.value = threshold

    def threshold_label(self, threshold: float) -> str:
        """How the image slider reads this threshold (one of its stops)."""
        return self._image_labels[float(threshold)]

    def _update_selection(self):
        """The defect filter changed: new subset, histograms, F1-max, and images in the grid."""
        defect = self.defect_filter.value
        normal = ~self._labels
        self._selected = normal | (self._labels if defect == ALL_DEFECTS else self._defect_types == defect)
        selected_labels, selected_scores = self._labels[self._selected], self._scores[self._selected]
        self._f1_max, self._threshold_f1 = metrics.f1_max(selected_labels, selected_scores)
        self.snap_f1_button.description = f"F1-max threshold ({self.threshold_label(self._threshold_f1)})"
        if self.threshold_normal is not None:
            self.snap_normal_button.description = (
                f"normal-image threshold ({self.threshold_label(self.threshold_normal)})")

        edges = self._histogram["edges"]
        normal_counts = np.histogram(selected_scores[~selected_labels], bins=edges)[0]
        anomalous_counts = np.histogram(selected_scores[selected_labels], bins=edges)[0]
        self._histogram["normal"].set_data(normal_counts)
        self._histogram["anomalous"].set_data(anomalous_counts)
        self._histogram["ax"].set_ylim(0, 1.6 * max(normal_counts.max(), anomalous_counts.max(), 1))
        self._histogram["lines"]["F1-max"].set_xdata([self._threshold_f1, self._threshold_f1])
        self._histogram["ax"].set_title(
            f"{int((~selected_labels).sum())} normal and {int(selected_labels.sum())} anomalous test images",
            fontsize=9)

        groups = [np.flatnonzero(normal)] + [np.flatnonzero(self._selected & (self._defect_types == name))
                                             for name in sorted(set(self._defect_types[self._selected & self._labels]))]
        self._show_images(shown_images(groups, self._n_shown))
        self._update_pixel_level(render=False)
        self._update_image_level(force_grid=True)  # renders the grid once, titles and contours together

    def _show_images(self, shown: list[int]):
        for contour in self._truth_contours:
            contour.remove()
        self._truth_contours = []
        self._shown = shown
        for slot, ax in enumerate(self._grid_axes):
            ax.set_visible(slot < len(shown))
            if slot >= len(shown):
                continue
            index = shown[slot]
            picture = self._images[index]
            self._grid_images[slot].set_data(picture)
            self._grid_images[slot].set_clim(*((0, 255) if picture.dtype == np.uint8 else (0.0, 1.0)))
            if self._masks is not None and self._masks[index].any():
                self._truth_contours.append(ax.contour(
                    self._contour_x, self._contour_y, np.pad(self._masks[index].astype(np.float32), 1),
                    levels=[0.5], colors=TRUTH_COLOUR, linewidths=1.2, linestyles="dashed"))

    def _update_image_level(self, force_grid: bool = False):
        """The image threshold (or the selection) changed: numbers, histogram line, grid titles."""
        summary = self.summary()
        self._threshold_line.set_xdata([summary["threshold"]] * 2)
        self.histogram_image.value = encode_figure(self._histogram_figure, "png")
        self.counts_html.value = (
            "<table style='border-collapse:collapse;text-align:center'>"
            "<tr><td></td><td style='padding:0 8px'><i>predicted normal</i></td>"
            "<td style='padding:0 8px'><i>predicted anomalous</i></td></tr>"
            f"<tr><td style='text-align:right'><i>normal</i></td><td>TN {metric_html('tn', summary['tn'])}</td>"
            f"<td>FP {metric_html('fp', summary['fp'])}</td></tr>"
            f"<tr><td style='text-align:right'><i>anomalous</i></td><td>FN {metric_html('fn', summary['fn'])}</td>"
            f"<td>TP {metric_html('tp', summary['tp'])}</td></tr></table>")
        self.rates_html.value = (
            f"precision {metric_html('precision', summary['precision'])} &middot; "
            f"recall {metric_html('recall', summary['recall'])} &middot; "
            f"F1 {metric_html('f1', summary['f1'])} &middot; "
            f"false-positive rate {metric_html('fpr', summary['fpr'])}<br>"
            f"<small>best F1 on these images: {summary['f1_max']:.3f} at "
            f"<b data-metric=\"threshold_f1\" data-value=\"{summary['threshold_f1']!r}\">"
            f"{self.threshold_label(summary['threshold_f1'])}</b></small>")
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{metric_html('misses-' + html.escape(name, quote=True), missed)} of {summary['defect_counts'][name]}</td></tr>"
            for name, missed in summary["misses_per_defect"].items())
        self.misses_html.value = f"<table><tr><td colspan=2><i>missed defects</i></td></tr>{rows}</table>"

        flagged = at_least(self._scores[self._shown], summary["threshold"])
        decisions = tuple(flagged.tolist())
        if force_grid or decisions != self._shown_decisions:  # redraw the grid only when a title changes
            self._shown_decisions = decisions
            self._set_titles(flagged)
            self.grid_image.value = encode_figure(self._grid_figure, "jpeg")

    def _set_titles(self, flagged: np.ndarray):
        for slot, index in enumerate(self._shown):
            right = bool(flagged[slot]) == bool(self._labels[index])
            self._grid_axes[slot].set_title(
                f"{self._defect_types[index]}  {self._scores[index]:.3g}\n"
                f"{'flagged' if flagged[slot] else 'passed'}",
                fontsize=8, color="green" if right else "red")

    def _pixel_counts_for(self, threshold: float):
        """Per image [N]: flagged pixels, and flagged pixels inside the ground truth (or None)."""
        flagged = at_least(self._maps, threshold)
        self._flagged_pixels = flagged.sum(axis=(1, 2))
        self._flagged_truth = None if self._masks is None else (flagged & self._masks).sum(axis=(1, 2))

    def _update_pixel_level(self, render: bool = True):
        """The pixel threshold (or the selection) changed: pixel numbers and predicted contours."""
        threshold = float(self.pixel_slider.value)
        self._pixel_counts_for(threshold)
        summary = self.summary()
        text = (f"flagged pixels: {metric_html('flagged_fraction', summary['flagged_fraction'])} "
                f"of the {summary['n_images']} images")
        if summary["pixel_recall"] is not None:
            text += (f" &middot; pixel recall {metric_html('pixel_recall', summary['pixel_recall'])}"
                     f" &middot; pixel FPR {metric_html('pixel_fpr', summary['pixel_fpr'])}")
        self.pixel_html.value = text

        for contour in self._predicted_contours:
            contour.remove()
        self._predicted_contours = []
        for slot, index in enumerate(self._shown):
            if self._flagged_pixels[index] == 0:
                continue  # nothing to outline (and contour() would warn about an empty level)
            low = self._maps[index].min() - 1.0
            self._predicted_contours.append(self._grid_axes[slot].contour(
                self._contour_x, self._contour_y, np.pad(self._maps[index], 1, constant_values=low),
                levels=[threshold], colors=PREDICTED_COLOUR, linewidths=1.5))
        if render:
            self.grid_image.value = encode_figure(self._grid_figure, "jpeg")

    # ------------------------------------------------------------------------- plain data

    def summary(self) -> dict:
        """Everything the explorer shows, as plain Python numbers, for the current controls.

        Image level (over the selected images: the normal ones plus the chosen defect type):
        ``threshold`` (exact) and ``threshold_label`` (as the slider reads it), ``tp``, ``fp``, ``tn``, ``fn``, ``precision``, ``recall``, ``f1``, ``fpr``,
        ``accuracy`` (from :func:`simplenet_edu.evaluation.metrics.confusion_at`), ``misses_per_defect`` and
        ``defect_counts`` ({type: count}), ``f1_max`` and ``threshold_f1`` (on the selection),
        ``threshold_normal``. Pixel level: ``pixel_threshold``, ``flagged_pixels``,
        ``flagged_fraction``, and ``pixel_recall`` / ``pixel_fpr`` (None without masks).
        ``shown``: the indices of the images in the grid.
        """
        threshold = float(self.image_slider.value)
        selected = self._selected
        labels, scores = self._labels[selected], self._scores[selected]
        counts = metrics.confusion_at(labels, scores, threshold)
        defects = self._defect_types[selected & self._labels]
        missed = self._defect_types[selected & self._labels & ~at_least(self._scores, threshold)]
        names = sorted(set(defects.tolist()))

        pixels_per_image = self._maps.shape[1] * self._maps.shape[2]
        n_pixels = int(selected.sum()) * pixels_per_image
        flagged = int(self._flagged_pixels[selected].sum())
        pixel_recall = pixel_fpr = None
        if self._masks is not None:
            truth = int(self._masks[selected].sum())
            flagged_truth = int(self._flagged_truth[selected].sum())
            pixel_recall = flagged_truth / truth if truth else 0.0
            pixel_fpr = (flagged - flagged_truth) / (n_pixels - truth) if n_pixels > truth else 0.0
        return {
            "defect_type": self.defect_filter.value,
            "n_images": int(selected.sum()),
            "n_normal": int((~labels).sum()),
            "n_anomalous": int(labels.sum()),
            "threshold": threshold,
            "threshold_label": self.image_slider.label,
            **counts,
            "misses_per_defect": {name: int((missed == name).sum()) for name in names},
            "defect_counts": {name: int((defects == name).sum()) for name in names},
            "f1_max": self._f1_max,
            "threshold_f1": self._threshold_f1,
            "threshold_normal": self.threshold_normal,
            "pixel_threshold": float(self.pixel_slider.value),
            "flagged_pixels": flagged,
            "flagged_fraction": flagged / n_pixels,
            "pixel_recall": pixel_recall,
            "pixel_fpr": pixel_fpr,
            "shown": list(self._shown),
        }


def explore(result, n_shown: int = 8, bins: int = 30) -> ThresholdExplorer:
    """The :class:`ThresholdExplorer` of ``result``: the last line of a cell displays it."""
    return ThresholdExplorer(result, n_shown=n_shown, bins=bins)
