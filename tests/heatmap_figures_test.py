"""Heat maps of predict (deploy/images.py, deploy/scoring.py) and the evaluation's example sheet
(visualize.py): original size and aspect, one colour scale per predicted image, the threshold."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from rgpkd_jax import visualize
from rgpkd_jax.deploy import images as images_lib
from rgpkd_jax.deploy import scoring

MODEL_SIZE = 32
THRESHOLD = 0.6


def _write_images(folder, sizes):
    """Non-square RGB files named 0.png, 1.png, ... of the given (height, width)."""
    rng = np.random.default_rng(0)
    for i, (height, width) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def _map_function(peaks):
    """Fake model: image i's map is a ramp from 0 to peaks[i] (model resolution)."""
    def maps_and_scores(images):
        assert images.shape[1:3] == (MODEL_SIZE, MODEL_SIZE)
        ramp = np.linspace(0, 1, MODEL_SIZE * MODEL_SIZE, dtype=np.float32).reshape(MODEL_SIZE, MODEL_SIZE)
        maps = np.stack([ramp * p for p in peaks[:len(images)]])
        return maps, maps.reshape(len(maps), -1).max(axis=1)
    return maps_and_scores


def test_predict_heatmap_has_the_input_images_size_and_aspect(tmp_path):
    (tmp_path / "in").mkdir()
    _write_images(tmp_path / "in", [(90, 200)])
    result = scoring.predict_files(str(tmp_path / "in"), MODEL_SIZE, _map_function([1.0]), THRESHOLD,
                                   str(tmp_path / "out"))
    with Image.open(result["predictions"][0]["heatmap"]) as heatmap:
        assert heatmap.size == (200 + images_lib.BAR_EXTRA_WIDTH, 90)  # (width, height)


def test_predict_colours_each_heatmap_on_its_own_scale(tmp_path):
    """An outlier in another image changes neither the scale nor the picture of image 0."""
    (tmp_path / "in").mkdir()
    _write_images(tmp_path / "in", [(40, 70), (40, 70)])
    pictures, scales = [], []
    for run, peaks in enumerate(([1.0, 1.2], [1.0, 50.0])):
        out = tmp_path / f"out{run}"
        row = scoring.predict_files(str(tmp_path / "in"), MODEL_SIZE, _map_function(peaks), THRESHOLD,
                                    str(out))["predictions"][0]
        scales.append((row["heatmap_min"], row["heatmap_max"]))
        with Image.open(row["heatmap"]) as heatmap:
            pictures.append(np.asarray(heatmap))
    assert scales[0] == scales[1] == (0.0, 1.0)
    np.testing.assert_array_equal(pictures[0], pictures[1])


def test_heatmap_colour_bar_marks_the_threshold():
    image = Image.new("RGB", (50, 101), "gray")
    heat = np.linspace(0.2, 0.4, 64, dtype=np.float32).reshape(8, 8)
    for threshold, (vmin, vmax) in ((0.3, (0.2, 0.4)), (0.9, (0.2, 0.9))):  # above the map: widened
        picture, drawn = images_lib.heatmap_with_colour_bar(image, heat, threshold)
        assert (drawn["vmin"], drawn["vmax"]) == pytest.approx((vmin, vmax), rel=1e-6)  # float32 map
        assert drawn["threshold"] == threshold
        row = drawn["threshold_row"]
        assert row == round((drawn["vmax"] - threshold) / (drawn["vmax"] - drawn["vmin"]) * 100)
        bar_column = 50 + images_lib.BAR_GAP + images_lib.BAR_WIDTH // 2
        assert picture[row, bar_column].tolist() == [0, 0, 0]  # the line, across the bar
    assert drawn["threshold_row"] == 0  # the threshold above every map value tops the bar


@pytest.mark.parametrize("peak,threshold", [(0.4, 0.4), (0.4, 0.9), (0.4, 0.395), (0.4, 0.2), (0.4, 0.0)])
def test_colour_bar_labels_never_overlap_and_always_show_the_threshold(peak, threshold):
    """When the map stays below the threshold its maximum is the threshold: the labels at the top
    once overlapped."""
    heat = np.linspace(0.0, peak, 64, dtype=np.float32).reshape(8, 8)
    text_bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), "thr 0.9")[3]  # the font's
    for height in (40, 101):
        _, drawn = images_lib.heatmap_with_colour_bar(Image.new("RGB", (50, height), "gray"), heat, threshold)
        tops = [top for _, top in drawn["labels"]]
        assert all(b - a > text_bottom for a, b in zip(tops, tops[1:])), drawn["labels"]
        assert all(0 <= top <= height - text_bottom for top in tops)
        assert f"thr {threshold:.3g}" in [text for text, _ in drawn["labels"]]
    assert len(drawn["labels"]) == (3 if threshold == 0.2 else 2)  # 101 px: a threshold at an end hides it


def _predictions(n=6, size=16):
    rng = np.random.default_rng(1)
    labels = np.array([0, 1] * (n // 2), np.int32)
    return {"image": rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8),
            "map": rng.random((n, size, size)).astype(np.float32),
            "mask": np.zeros((n, size, size), np.float32), "label": labels,
            "score": rng.random(n).astype(np.float32),
            "defect_type": np.where(labels == 1, "crack", "good"),
            "file_name": np.array([f"test/x/{i:03d}.png" for i in range(n)])}


def test_example_sheet_names_the_files_and_marks_threshold_and_random_teacher():
    predictions = _predictions()
    fig = visualize.example_figure(predictions, 2, threshold=0.5, random_teacher=True)
    titles = " ".join(ax.get_title() for ax in fig.axes)
    shown = visualize.pick_examples(predictions["label"], predictions["score"], 2)
    assert all(predictions["file_name"][i] in titles for i in shown)
    colour_bar = fig.axes[-1]
    assert [list(line.get_ydata()) for line in colour_bar.get_lines()] == [[0.5, 0.5]]
    assert [text.get_text() for text in colour_bar.texts] == ["thr 0.5"]  # on the bar, beside its line
    assert fig.get_suptitle() == "RANDOM TEACHER: not a result"
    plain = visualize.example_figure(predictions, 2, threshold=None, random_teacher=False)
    assert plain.get_suptitle() == "no decision threshold (threshold.json absent)"
    assert not plain.axes[-1].get_lines() and not plain.axes[-1].texts


def test_example_sheet_shows_each_image_in_its_files_aspect():
    """The model sees a square; a 500 x 1260 file is shown 500 high and 1260 wide, not squashed."""
    predictions = _predictions()
    shown = visualize.pick_examples(predictions["label"], predictions["score"], 2)
    sizes = {i: (500, 1260) if k % 2 else (300, 300) for k, i in enumerate(shown)}
    fig = visualize.example_figure(predictions, 2, threshold=0.5, sizes=sizes)
    for row, i in enumerate(shown):
        height, width = sizes[i]
        for ax in fig.axes[3 * row:3 * row + 3]:
            assert ax.images[0].get_extent() == [0, width, height, 0]
            x0, x1 = ax.get_xlim()
            y0, y1 = ax.get_ylim()
            assert (x1 - x0) / abs(y1 - y0) == pytest.approx(width / height)
