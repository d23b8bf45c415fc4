"""The threshold explorer, driven without a kernel on a 6-image result whose numbers are counted by hand.

The hand-made result (8 x 8 pixels):

    index   0     1     2     3        4        5
    label   0     0     0     1        1        1
    type    good  good  good  scratch  scratch  hole
    score   0.1   0.3   0.6   0.5      0.8      0.9

Every map is 0.5 on row 0, columns 0-3 (4 pixels); the anomalous maps are also 0.9 on row 1, columns
0-1 (2 pixels); 0 elsewhere. The anomalous masks cover row 1, columns 0-3 (4 pixels).
"""

import re

import numpy as np
import pytest

from simplenet_edu.evaluation.evaluator import metrics
from simplenet_edu.utils.errors import InputError
from simplenet_edu.evaluation.evaluator import EvaluationResult
from simplenet_edu.course.viz import plot_score_histograms
from simplenet_edu.course.widgets import ThresholdExplorer, explore

SCORES = np.array([0.1, 0.3, 0.6, 0.5, 0.8, 0.9], dtype=np.float32)
LABELS = np.array([0, 0, 0, 1, 1, 1])
TYPES = ["good", "good", "good", "scratch", "scratch", "hole"]


def make_result(threshold_normal=0.7, with_masks=True) -> EvaluationResult:
    maps = np.zeros((6, 8, 8), dtype=np.float32)
    maps[:, 0, 0:4] = 0.5
    maps[3:, 1, 0:2] = 0.9
    masks = np.zeros((6, 8, 8), dtype=np.uint8)
    masks[3:, 1, 0:4] = 1
    images = np.full((6, 8, 8, 3), 128, dtype=np.uint8)
    return EvaluationResult(
        image_scores=SCORES, labels=LABELS, defect_types=list(TYPES), anomaly_maps=maps,
        masks=masks if with_masks else None, images=images, paths=[f"{i}.png" for i in range(6)],
        threshold_normal=threshold_normal, pixel_threshold_normal=0.7)


def shown_numbers(explorer) -> dict:
    """The numbers as the HTML widgets show them (what a learner reads), by their data-metric tag."""
    text = explorer.counts_html.value + explorer.rates_html.value + explorer.misses_html.value + explorer.pixel_html.value
    return {name: float(value) for name, value in re.findall(r'data-metric="([^"]+)">([^<]+)<', text)}


@pytest.fixture
def explorer():
    return ThresholdExplorer(make_result())


# The image slider's stops, ascending: the six scores, the normal threshold 0.7, and the next float32
# above the highest score (nothing flagged). Scores are float32, so 0.1 is 0.10000000149...
TOP = float(np.nextafter(np.float32(0.9), np.float32(np.inf)))
STOPS = sorted({float(score) for score in SCORES} | {0.7, TOP})
STOP_LABELS = ["0.1", "0.3", "0.5", "0.6", "0.7", "0.8", "0.9", "> 0.9"]


def counts(explorer) -> tuple:
    summary = explorer.summary()
    return summary["tp"], summary["fp"], summary["tn"], summary["fn"]


def first_stop_at_least(slider, value: float) -> float:
    return next(option for _, option in slider.options if option >= value)


def test_counts_and_rates_at_a_threshold(explorer):
    explorer.image_slider.label = "0.6"  # flags 0.6 (normal), 0.8 and 0.9; misses the 0.5 scratch
    summary = explorer.summary()
    assert summary["threshold"] == float(np.float32(0.6)) and summary["threshold_label"] == "0.6"
    assert (summary["tp"], summary["fp"], summary["tn"], summary["fn"]) == (2, 1, 2, 1)
    assert summary["precision"] == pytest.approx(2 / 3)
    assert summary["recall"] == pytest.approx(2 / 3)
    assert summary["f1"] == pytest.approx(2 / 3)
    assert summary["fpr"] == pytest.approx(1 / 3)
    assert summary["misses_per_defect"] == {"hole": 0, "scratch": 1}
    assert summary["defect_counts"] == {"hole": 1, "scratch": 2}
    shown = shown_numbers(explorer)
    assert (shown["tp"], shown["fp"], shown["tn"], shown["fn"]) == (2, 1, 2, 1)
    assert shown["precision"] == pytest.approx(0.667) and shown["fpr"] == pytest.approx(0.333)
    assert (shown["misses-scratch"], shown["misses-hole"]) == (1, 0)


def test_moving_the_slider_updates_the_shown_counts(explorer):
    explorer.image_slider.label = "0.9"  # only the 0.9 hole is flagged
    shown = shown_numbers(explorer)
    assert (shown["tp"], shown["fp"], shown["tn"], shown["fn"]) == (1, 0, 3, 2)
    assert (shown["misses-scratch"], shown["misses-hole"]) == (2, 0)
    explorer.image_slider.value = float(np.float32(0.3))  # everything but the 0.1 normal image
    shown = shown_numbers(explorer)
    assert (shown["tp"], shown["fp"], shown["tn"], shown["fn"]) == (3, 2, 1, 0)


def test_image_stops_are_the_scores_and_the_thresholds(explorer):
    assert [value for _, value in explorer.image_slider.options] == STOPS  # exact floats, ascending
    assert [label for label, _ in explorer.image_slider.options] == STOP_LABELS
    # A threshold that is not a stop is refused, not rounded to a neighbour.
    with pytest.raises(Exception, match="Invalid selection"):
        explorer.image_slider.value = 0.55


def test_each_step_changes_the_decision_for_one_score_level():
    # Two images share the score 0.5: that step must flip both, the step at 0.7 (no score) none.
    scores = np.array([0.1, 0.3, 0.5, 0.5, 0.8, 0.9], dtype=np.float32)
    result = make_result()
    result.image_scores = scores
    explorer = ThresholdExplorer(result)
    flagged = []
    for index in range(len(explorer.image_slider.options)):
        explorer.image_slider.index = index  # what one arrow-key press does in the browser
        summary = explorer.summary()
        flagged.append(summary["tp"] + summary["fp"])
    assert flagged == [6, 5, 4, 2, 2, 1, 0]  # stops 0.1, 0.3, 0.5, 0.7, 0.8, 0.9, > 0.9
    values = [value for _, value in explorer.image_slider.options]
    for i in range(len(values) - 1):
        assert flagged[i] - flagged[i + 1] == int((scores.astype(np.float64) == values[i]).sum())


def test_slider_ends_flag_everything_and_nothing(explorer):
    explorer.image_slider.index = len(explorer.image_slider.options) - 1  # End: just above 0.9
    assert explorer.image_slider.value == TOP and explorer.image_slider.label == "> 0.9"
    assert counts(explorer) == (0, 0, 3, 3)
    # Nothing flagged even where NumPy compares the float32 scores in float32.
    assert metrics.confusion_at(LABELS, SCORES, explorer.image_slider.value)["fp"] == 0
    explorer.image_slider.index = 0  # Home: the lowest score
    assert counts(explorer) == (3, 3, 0, 0)


def test_snap_buttons_select_the_exact_thresholds(explorer):
    explorer.image_slider.label = "0.3"
    explorer.snap_f1_button.click()
    # F1 by threshold: 0.9 -> 1/2, 0.8 -> 4/5, 0.6 -> 2/3, 0.5 -> 6/7 (tp 3, fp 1), 0.3 -> 3/4, 0.1 -> 2/3.
    assert explorer.image_slider.value == metrics.f1_max(LABELS, SCORES)[1] == float(np.float32(0.5))
    assert explorer.image_slider.label == "0.5"
    summary = explorer.summary()
    assert summary["f1"] == pytest.approx(6 / 7) and summary["f1_max"] == pytest.approx(6 / 7)
    assert (summary["tp"], summary["fp"], summary["tn"], summary["fn"]) == (3, 1, 2, 0)
    assert explorer.snap_f1_button.description == "F1-max threshold (0.5)"
    assert 'data-metric="threshold_f1" data-value="0.5">0.5<' in explorer.rates_html.value  # exact, label

    explorer.snap_normal_button.click()
    assert explorer.image_slider.value == make_result().threshold_normal == 0.7  # float64, not a score
    assert explorer.image_slider.label == "0.7"
    assert explorer.snap_normal_button.description == "normal-image threshold (0.7)"
    summary = explorer.summary()
    assert (summary["tp"], summary["fp"], summary["tn"], summary["fn"]) == (2, 0, 3, 1)
    assert summary["misses_per_defect"] == {"hole": 0, "scratch": 1}


def test_a_normal_threshold_next_to_a_score_stays_exact():
    # threshold_from_normal returns the next float64 above a score: in float32 it would round back
    # to that score and flag it. The explorer keeps it as its own stop and does not flag 0.6.
    above = float(np.nextafter(np.float64(np.float32(0.6)), np.inf))
    explorer = ThresholdExplorer(make_result(threshold_normal=above))
    explorer.snap_normal_button.click()
    assert explorer.image_slider.value == above and explorer.image_slider.label == "> 0.6"
    assert counts(explorer) == (2, 0, 3, 1)  # as at 0.7: the 0.6 normal image is not flagged
    explorer.image_slider.label = "0.6"
    assert counts(explorer) == (2, 1, 2, 1)


def test_threshold_labels_are_short_and_distinct():
    from simplenet_edu.course.explorer_parts import threshold_labels

    assert threshold_labels([0.1, 0.8615, 2.0]) == ["0.1", "0.8615", "2"]
    # Neighbours that read alike at 4 digits get more, and only they.
    assert threshold_labels([0.5, 0.86151, 0.86153, 0.9]) == ["0.5", "0.86151", "0.86153", "0.9"]
    assert threshold_labels([0.3, 0.9, TOP]) == ["0.3", "0.9", "> 0.9"]


def test_without_a_normal_threshold_the_button_is_disabled_with_a_note():
    explorer = ThresholdExplorer(make_result(threshold_normal=None))
    assert explorer.snap_normal_button.disabled
    assert "No threshold from normal images" in explorer.normal_note.value
    assert explorer.image_slider.label == "0.6"  # the lowest stop at or above the median score 0.55
    assert [label for label, _ in explorer.image_slider.options] == ["0.1", "0.3", "0.5", "0.6", "0.8", "0.9", "> 0.9"]
    explorer.image_slider.label = "0.3"
    explorer.snap_normal_button.click()
    assert explorer.image_slider.label == "0.3"
    assert explorer.summary()["threshold_normal"] is None


def test_defect_filter_restricts_the_counts(explorer):
    explorer.image_slider.label = "0.6"
    explorer.defect_filter.value = "scratch"  # normal images 0-2 and scratches 3 (0.5), 4 (0.8)
    summary = explorer.summary()
    assert summary["n_images"] == 5
    assert (summary["tp"], summary["fp"], summary["tn"], summary["fn"]) == (1, 1, 2, 1)
    assert summary["misses_per_defect"] == {"scratch": 1}
    # F1 on this subset: 0.8 -> 2/3, 0.6 -> 1/2, 0.5 -> 4/5 (tp 2, fp 1), 0.3 -> 2/3.
    assert (summary["f1_max"], summary["threshold_f1"]) == (pytest.approx(0.8), pytest.approx(0.5))
    assert summary["shown"] == [0, 3, 1, 4, 2]  # normal and scratch in turn

    explorer.defect_filter.value = "hole"  # normal images 0-2 and the 0.9 hole
    summary = explorer.summary()
    assert (summary["tp"], summary["fp"], summary["tn"], summary["fn"]) == (1, 1, 2, 0)
    assert (summary["f1_max"], summary["threshold_f1"]) == (pytest.approx(1.0), pytest.approx(0.9))
    explorer.snap_f1_button.click()
    subset = np.array([0, 1, 2, 5])
    assert explorer.image_slider.value == metrics.f1_max(LABELS[subset], SCORES[subset])[1]
    assert explorer.snap_f1_button.description == "F1-max threshold (0.9)"

    explorer.defect_filter.value = "all"
    assert explorer.summary()["shown"] == [0, 5, 3, 1, 4, 2]  # normal, hole, scratch in turn


def test_pixel_slider_changes_the_flagged_area(explorer):
    # It starts at the exact pixel threshold from normal images, one of its 202 stops.
    assert explorer.pixel_slider.value == 0.7 and explorer.pixel_slider.label == "0.7"
    assert len(explorer.pixel_slider.options) == 202
    summary = explorer.summary()  # only the 2 pixels at 0.9 of each anomalous image
    assert summary["pixel_threshold"] == 0.7
    assert summary["flagged_pixels"] == 6
    assert summary["flagged_fraction"] == pytest.approx(6 / 384)
    assert summary["pixel_recall"] == pytest.approx(6 / 12)  # 2 of the 4 mask pixels per image
    assert summary["pixel_fpr"] == pytest.approx(0.0)
    assert shown_numbers(explorer)["pixel_recall"] == pytest.approx(0.5)

    # Any stop in (0, 0.5] adds the 4 pixels at 0.5 of every image, all outside the masks.
    explorer.pixel_slider.value = first_stop_at_least(explorer.pixel_slider, 0.4)
    summary = explorer.summary()
    assert summary["flagged_pixels"] == 6 + 24
    assert summary["pixel_recall"] == pytest.approx(0.5)
    assert summary["pixel_fpr"] == pytest.approx(24 / 372)

    explorer.pixel_slider.index = 0  # 0.0: every pixel
    assert explorer.summary()["flagged_fraction"] == pytest.approx(1.0)

    explorer.defect_filter.value = "hole"
    explorer.pixel_slider.value = 0.7
    assert explorer.summary()["flagged_pixels"] == 2  # only image 5 of the selection has 0.9 pixels


def test_pixel_threshold_from_normal_is_kept_exact_outside_the_range():
    # Just above the highest map value (0.9 in float32): a stop of its own, and nothing flagged.
    result = make_result()
    result.pixel_threshold_normal = TOP
    explorer = ThresholdExplorer(result)
    assert explorer.pixel_slider.value == TOP and explorer.pixel_slider.label == "> 0.9"
    assert explorer.summary()["flagged_pixels"] == 0


def test_grid_is_redrawn_when_a_shown_decision_changes(explorer):
    explorer.image_slider.label = "0.7"
    before = explorer.grid_image.value
    explorer.image_slider.label = "0.8"  # no score in [0.7, 0.8): the grid stays as it is
    assert explorer.grid_image.value is before
    explorer.image_slider.label = "0.6"  # the 0.6 normal image becomes flagged: its title changes
    assert explorer.grid_image.value != before
    assert bytes(explorer.histogram_image.value).startswith(b"\x89PNG")
    assert bytes(explorer.grid_image.value).startswith(b"\xff\xd8")  # JPEG


def test_without_masks_pixel_rates_are_none():
    explorer = ThresholdExplorer(make_result(with_masks=False))
    explorer.pixel_slider.value = 0.7
    summary = explorer.summary()
    assert summary["flagged_pixels"] == 6
    assert summary["pixel_recall"] is None and summary["pixel_fpr"] is None
    assert "pixel_recall" not in shown_numbers(explorer)


def test_explore_returns_a_displayable_widget():
    import ipywidgets

    explorer = explore(make_result(), n_shown=2)
    assert isinstance(explorer, ipywidgets.Widget)
    assert explorer.summary()["shown"] == [0, 5]


def test_user_mistakes_raise_input_errors():
    result = make_result()
    result.labels = np.zeros(6, dtype=int)
    with pytest.raises(InputError, match="both normal and anomalous"):
        ThresholdExplorer(result)
    result = make_result()
    result.anomaly_maps = result.anomaly_maps[:5]
    with pytest.raises(InputError, match="anomaly_maps"):
        ThresholdExplorer(result)
    with pytest.raises(InputError, match="n_shown"):
        ThresholdExplorer(make_result(), n_shown=0)
    with pytest.raises(InputError, match="not an EvaluationResult"):
        ThresholdExplorer(object())


def test_plot_score_histograms_counts():
    artists = plot_score_histograms(SCORES, LABELS, thresholds={"F1-max": 0.5, "normal": None}, bins=[0.0, 0.5, 1.0])
    # Bins [0, 0.5) and [0.5, 1]: normal 0.1, 0.3 | 0.6; anomalous - | 0.5, 0.8, 0.9.
    np.testing.assert_array_equal(artists["normal"].get_data().values, [2, 1])
    np.testing.assert_array_equal(artists["anomalous"].get_data().values, [0, 3])
    assert list(artists["lines"]) == ["F1-max"]
    import matplotlib.pyplot as plt

    plt.close(artists["ax"].figure)


def test_last_stop_lies_above_a_normal_threshold_higher_than_every_score():
    # The threshold from normal training images can exceed every test score; the slider's last stop
    # must still be the "nothing flagged" one, above it, labelled "> ...".
    explorer = ThresholdExplorer(make_result(threshold_normal=1e3))
    options = [value for _, value in explorer.image_slider.options]
    assert options[-1] > 1e3 and options[-2] == 1e3
    assert explorer.image_slider.options[-1][0].startswith(">")
    explorer.image_slider.index = len(options) - 1
    assert explorer.summary()["tp"] == 0 and explorer.summary()["fp"] == 0
