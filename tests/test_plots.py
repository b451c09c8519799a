"""Tests for fineprune.plots: the architecture diagram's graph, layout and PNG file."""


import matplotlib.image
import pytest
import tf_keras
from tf_keras import layers

from fineprune import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NUM_CLASSES = 5
CHALLENGE_LAYERS = [
    "input", "conv_1", "pool_1", "conv_2", "pool_2", "conv_3", "pool_3",
    "flatten_1", "fc_1", "conv_4", "flatten_2", "fc_2", "add_1", "activation_1", "output",
]


def build_badnet(num_classes: int) -> tf_keras.Model:
    """The CSAW-HackML-2020 DeepID-style BadNet, built here so the tests stand on their own."""
    inp = layers.Input((55, 47, 3), name="input")
    x = layers.Conv2D(20, 4, activation="relu", name="conv_1")(inp)
    x = layers.MaxPooling2D(2, name="pool_1")(x)
    x = layers.Conv2D(40, 3, activation="relu", name="conv_2")(x)
    x = layers.MaxPooling2D(2, name="pool_2")(x)
    x = layers.Conv2D(60, 3, activation="relu", name="conv_3")(x)
    pool_3 = layers.MaxPooling2D(2, name="pool_3")(x)
    fc_1 = layers.Dense(160, name="fc_1")(layers.Flatten(name="flatten_1")(pool_3))
    x = layers.Conv2D(80, 2, activation="relu", name="conv_4")(pool_3)
    fc_2 = layers.Dense(160, name="fc_2")(layers.Flatten(name="flatten_2")(x))
    x = layers.Add(name="add_1")([fc_1, fc_2])
    x = layers.Activation("relu", name="activation_1")(x)
    out = layers.Dense(num_classes, activation="softmax", name="output")(x)
    return tf_keras.Model(inp, out, name="badnet")


@pytest.fixture(scope="module")
def badnet() -> tf_keras.Model:
    return build_badnet(NUM_CLASSES)


@pytest.fixture(scope="module")
def drawn(badnet, tmp_path_factory):
    """The BadNet drawn once for all the file and figure tests: (output path, returned figure)."""
    out = tmp_path_factory.mktemp("drawing") / "arch.png"
    fig = plots.draw_architecture(badnet, out, title="BadNet")
    return out, fig


def box_texts(fig) -> dict[str, list]:
    """The text objects inside each layer's box, keyed by layer name (their gid)."""
    texts: dict[str, list] = {}
    for text in fig.axes[0].texts:
        if text.get_gid():
            texts.setdefault(text.get_gid(), []).append(text)
    return texts


def test_edges_follow_the_graph(badnet):
    edges = plots.layer_edges(badnet)
    assert set(edges) == {
        ("input", "conv_1"), ("conv_1", "pool_1"), ("pool_1", "conv_2"), ("conv_2", "pool_2"),
        ("pool_2", "conv_3"), ("conv_3", "pool_3"),
        ("pool_3", "flatten_1"), ("flatten_1", "fc_1"),
        ("pool_3", "conv_4"), ("conv_4", "flatten_2"), ("flatten_2", "fc_2"),
        ("fc_1", "add_1"), ("fc_2", "add_1"), ("add_1", "activation_1"), ("activation_1", "output"),
    }
    assert len(edges) == len(set(edges))


def test_layout_puts_the_branches_in_lanes_that_rejoin(badnet):
    pos = plots.layout_layers(badnet)
    assert set(pos) == set(CHALLENGE_LAYERS)
    for source, target in plots.layer_edges(badnet):
        assert pos[target][1] > pos[source][1], (source, target)
    assert pos["input"][1] == 0
    # Longest path: add_1 waits for the longer branch (conv_4, flatten_2, fc_2).
    assert pos["add_1"][1] == pos["fc_2"][1] + 1

    lane = {name: x for name, (x, _) in pos.items()}
    assert lane["fc_1"] < lane["fc_2"]  # Add([fc_1, fc_2]): the first argument's branch on the left
    assert lane["flatten_1"] == lane["fc_1"]
    assert lane["conv_4"] == lane["flatten_2"] == lane["fc_2"]
    assert lane["add_1"] == pytest.approx((lane["fc_1"] + lane["fc_2"]) / 2)
    trunk = ["input", "conv_1", "pool_1", "conv_2", "pool_2", "conv_3", "pool_3"]
    assert {lane[name] for name in trunk + ["add_1", "activation_1", "output"]} == {lane["pool_3"]}


def test_layout_keeps_boxes_in_a_row_apart():
    """Two inputs and parallel branches of equal length must not land on the same spot."""
    a = layers.Input((4,), name="a")
    b = layers.Input((4,), name="b")
    merged = layers.Concatenate(name="cat")([layers.Dense(3, name="da")(a), layers.Dense(3, name="db")(b)])
    pos = plots.layout_layers(tf_keras.Model([a, b], merged))
    for first, second in [("a", "b"), ("da", "db")]:
        assert pos[first][1] == pos[second][1]
        assert abs(pos[first][0] - pos[second][0]) >= 1.0
    assert pos["cat"][0] == pytest.approx((pos["da"][0] + pos["db"][0]) / 2)


def test_shared_layer_and_two_inputs(tmp_path):
    """A layer called twice gets one box fed by both callers; its label says the shape varies."""
    a = layers.Input((8, 8, 3), name="a")
    b = layers.Input((6, 6, 3), name="b")
    shared = layers.Conv2D(4, 3, name="shared")
    pooled_a = layers.GlobalAveragePooling2D(name="pool_a")(shared(a))
    pooled_b = layers.GlobalAveragePooling2D(name="pool_b")(shared(b))
    model = tf_keras.Model([a, b], layers.Add(name="add")([pooled_a, pooled_b]))
    assert set(plots.layer_edges(model)) == {
        ("a", "shared"), ("b", "shared"), ("shared", "pool_a"), ("shared", "pool_b"),
        ("pool_a", "add"), ("pool_b", "add"),
    }
    fig = plots.draw_architecture(model, tmp_path / "shared.png")
    assert "shape varies" in " ".join(t.get_text() for t in box_texts(fig)["shared"])


def test_sequential_model_is_refused(tmp_path):
    model = tf_keras.Sequential([layers.Input((4,)), layers.Dense(2)])
    with pytest.raises(ValueError, match="not functional"):
        plots.draw_architecture(model, tmp_path / "seq.png")
    assert list(tmp_path.iterdir()) == []


def test_draw_writes_a_readable_png(drawn):
    out, _ = drawn
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(out)
    height, width = image.shape[:2]
    assert 400 <= width <= 2000
    assert 900 <= height <= 2400
    assert height > width  # top-to-bottom chart
    assert image.std() > 0.05  # something was drawn, not a blank canvas


def test_draw_leaves_only_the_png(drawn):
    out, _ = drawn
    assert [p.name for p in out.parent.iterdir()] == [out.name]


def test_every_layer_is_labelled_with_name_settings_and_shape(drawn):
    _, fig = drawn
    labels = {name: "\n".join(t.get_text() for t in texts) for name, texts in box_texts(fig).items()}
    assert set(labels) == set(CHALLENGE_LAYERS)
    for name, label in labels.items():
        assert name in label.splitlines()
    assert "Conv2D 20, 4x4, relu" in labels["conv_1"]
    assert "52x44x20" in labels["conv_1"]
    assert "MaxPooling2D 2x2" in labels["pool_1"]
    assert "55x47x3" in labels["input"]
    assert "Dense 160, linear" in labels["fc_1"]
    assert f"Dense {NUM_CLASSES}, softmax" in labels["output"]
    assert "Add" in labels["add_1"]
    assert "1200" in labels["flatten_1"]  # 5x4x60


def test_text_stays_inside_its_box(drawn):
    _, fig = drawn
    renderer = fig.canvas.get_renderer()
    boxes = {p.get_gid(): p.get_window_extent(renderer) for p in fig.axes[0].patches if p.get_gid()}
    for name, texts in box_texts(fig).items():
        box = boxes[name]
        for text in texts:
            extent = text.get_window_extent(renderer)
            assert box.x0 < extent.x0 and extent.x1 < box.x1, (name, text.get_text())
            assert box.y0 < extent.y0 and extent.y1 < box.y1, (name, text.get_text())


def test_boxes_do_not_overlap(drawn):
    _, fig = drawn
    renderer = fig.canvas.get_renderer()
    boxes = [p.get_window_extent(renderer) for p in fig.axes[0].patches if p.get_gid()]
    for i, first in enumerate(boxes):
        for second in boxes[i + 1:]:
            assert not first.overlaps(second)


def test_draw_replaces_an_existing_file(badnet, tmp_path):
    out = tmp_path / "arch.png"
    out.write_bytes(b"old")
    plots.draw_architecture(badnet, out)
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in tmp_path.iterdir()] == ["arch.png"]


def test_failed_save_leaves_no_files(badnet, tmp_path, monkeypatch):
    def broken_savefig(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(plots.Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plots.draw_architecture(badnet, tmp_path / "arch.png")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_output_folder_is_created(badnet, tmp_path):
    out = tmp_path / "new" / "arch.png"
    plots.draw_architecture(badnet, out)
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_main_draws_the_challenge_model(tmp_path, capsys):
    out = tmp_path / "arch.png"
    assert plots.main([str(out), "--num-classes", "7"]) == 0
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert str(out) in capsys.readouterr().out


def test_main_help_and_bad_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        plots.main(["--help"])
    assert exit_info.value.code == 0
    assert "--num-classes" in capsys.readouterr().out

    with pytest.raises(SystemExit) as exit_info:
        plots.main(["out.png", "--num-classes", "0"])
    assert exit_info.value.code == 2


def test_draw_gallery_writes_one_captioned_cell_per_image(tmp_path):
    import numpy as np

    images = np.random.default_rng(0).uniform(0, 255, (5, 55, 47, 3))
    out = tmp_path / "gallery.png"
    fig = plots.draw_gallery(images, [f"face {i}" for i in range(5)], out, columns=3, title="Faces")
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in tmp_path.iterdir()] == ["gallery.png"]
    assert [ax.get_xlabel() for ax in fig.axes] == [f"face {i}" for i in range(5)]
    assert fig.axes[0].get_images()[0].get_array().shape == (55, 47, 3)


def test_draw_gallery_leaves_none_cells_empty_with_their_caption(tmp_path):
    import numpy as np

    images = [np.zeros((55, 47, 3)), None]
    fig = plots.draw_gallery(images, ["a face\nsecond line", "nothing here"], tmp_path / "g.png", columns=2)
    face, empty = fig.axes
    assert face.get_xlabel() == "a face\nsecond line"
    assert not empty.axison and [t.get_text() for t in empty.texts] == ["nothing here"]
    # The caption's two lines fit between the image and the bottom of the figure.
    assert face.get_position().y0 * fig.get_size_inches()[1] > 0.3


def _evaluation(mistakes):
    from fineprune.evaluation import CleanResult, Evaluation, PoisonedResult

    return Evaluation(
        "bd.h5", "bd_rp.h5", 4, "unit",
        clean=CleanResult("clean.h5", 10, 100.0, 90.0, 80.0),
        poisoned=[PoisonedResult("p.h5", "sunglasses", 5, 0, 100.0, 40.0, 20.0, 60.0)],
        mistakes=mistakes,
    )


def test_draw_mistakes_captions_true_original_and_g_labels_one_row_per_kind(tmp_path):
    import numpy as np

    from fineprune.evaluation import Mistake

    face = np.full((55, 47, 3), 128.0)
    mistakes = [Mistake(face, "clean", "flagged", 2, 2, 4), Mistake(face, "clean", "flagged", 3, 1, 4),
                Mistake(face, "clean", "misclassified", 1, 1, 3), Mistake(face, "sunglasses", "got through", None, 0, 0)]
    fig = plots.draw_mistakes(_evaluation(mistakes), tmp_path / "m.png", "What G gets wrong", columns=3)
    captions = [ax.get_xlabel() for ax in fig.axes if ax.axison]
    assert captions == ["clean\nflagged\ntrue 2\nBadNet 2, G N", "clean\nflagged\ntrue 3\nBadNet 1, G N",
                        "clean\nmisclassified\ntrue 1\nBadNet 1, G 3", "sunglasses\ngot through\ntrue ?\nBadNet 0, G 0"]
    assert len(fig.axes) == 9  # three rows of three: each kind starts a row
    title = fig.texts[0].get_text()
    assert title == ("What G gets wrong\nclean data: G 80.00% correct\n"
                     "sunglasses: 20.00% get through, 60.00% flagged")
    assert (tmp_path / "m.png").read_bytes()[:8] == PNG_SIGNATURE


def test_draw_mistakes_says_so_when_there_are_none(tmp_path):
    fig = plots.draw_mistakes(_evaluation([]), tmp_path / "m.png", "What G gets wrong")
    assert [t.get_text() for t in fig.axes[0].texts] == ["G made no mistakes on these inputs"]
    assert (tmp_path / "m.png").stat().st_size > 1000


def test_draw_pruning_curves_plots_accuracy_and_each_trigger(tmp_path):
    from fineprune.pruning_curve import SweepPoint

    points = [SweepPoint(k, k / 4, 100.0 - 5 * k, {"eyebrows": 100.0 - 20 * k, "lipstick": 90.0}) for k in range(5)]
    fig = plots.draw_pruning_curves({"multi": points, "one": points}, tmp_path / "c.png", "conv_3",
                                    marks={"multi": points[2]})
    multi, one = fig.axes
    assert [line.get_label() for line in multi.get_lines()] == [
        "clean accuracy", "attack success: eyebrows", "attack success: lipstick", "4-point accuracy budget"]
    assert list(multi.get_lines()[0].get_xdata()) == [0.0, 25.0, 50.0, 75.0, 100.0]
    assert list(multi.get_lines()[1].get_ydata()) == [100.0, 80.0, 60.0, 40.0, 20.0]
    assert list(multi.get_lines()[3].get_xdata()) == [50.0, 50.0]
    assert len(one.get_lines()) == 3 and multi.get_title() == "multi"
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG_SIGNATURE


def test_draw_channel_activations_orders_channels_as_fine_pruning_does(tmp_path):
    import numpy as np

    clean = np.array([0.5, 0.0, 0.2])
    fig = plots.draw_channel_activations({"sunglasses": (clean, {"sunglasses": np.array([0.9, 0.1, 0.3])})},
                                         tmp_path / "a.png", "conv_3")
    (ax,) = fig.axes
    assert [bar.get_height() for bar in ax.patches] == [0.0, 0.2, 0.5]
    assert list(ax.get_lines()[0].get_ydata()) == [0.1, 0.3, 0.9]
    assert (tmp_path / "a.png").read_bytes()[:8] == PNG_SIGNATURE
