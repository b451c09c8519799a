"""Figures: the model architecture diagram, galleries of face images (including what G gets
wrong), the pruning curves, and the channel activations that explain them.

`draw_architecture` draws the layer graph of a tf_keras functional model as a top-to-bottom chart
of rounded boxes (name, type and key settings, output shape) joined by arrows that follow the real
graph. `python -m fineprune.plots OUT.png` draws the challenge architecture.

Figures are drawn on a bare `matplotlib.figure.Figure` with the Agg canvas, so nothing here
depends on, or changes, a global pyplot state or an interactive backend.
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch
from matplotlib.textpath import TextPath

from fineprune.cli import ArgumentParser, quiet_tensorflow
from fineprune.files import replacing

if TYPE_CHECKING:
    import tf_keras

    from fineprune.evaluation import Evaluation, Mistake
    from fineprune.pruning_curve import SweepPoint
    from fineprune.detection.reversal import ExaminedClass, ReversedTrigger

# Box colours by layer kind; the legend lists the kinds that occur, in this order.
_KIND_COLOURS = {
    "input": "#d9d9d9",
    "conv": "#9ecae1",
    "pooling": "#c7e9c0",
    "flatten": "#fdd0a2",
    "dense": "#dadaeb",
    "merge/activation": "#fcbba1",
    "other": "#ffffff",
}
_MERGE_OR_ACTIVATION = {
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
    "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "ThresholdedReLU",
}

# Sizes, in points for fonts and inches for everything else.
_NAME_FONT = 8.5
_DETAIL_FONT = 8.0
_LINE_SPACING = 1.25
_BOX_PAD = 0.09  # inside a box, between its edge and its text
_MIN_BOX_WIDTH = 1.9
_LANE_GAP = 0.45  # horizontal space between boxes in neighbouring lanes
_ROW_GAP = 0.32  # vertical space between rows, where the arrows run
_MARGIN = 0.3
_TITLE_BAND = 0.55
_LEGEND_BAND = 0.65
_MIN_FIGURE_WIDTH = 6.0  # room for the legend


def layer_edges(model: "tf_keras.Model") -> list[tuple[str, str]]:
    """The graph's edges as (from layer, to layer) name pairs, from the model's public config.

    A layer called several times (a shared layer) contributes the edges of every call; an edge
    is listed once however many tensors run along it.
    """
    config = model.get_config()
    if "input_layers" not in config:
        raise ValueError(
            f"model {model.name!r} is not functional; build it as tf_keras.Model(inputs, outputs)"
        )
    edges: list[tuple[str, str]] = []
    for entry in config["layers"]:
        for source in _tensor_sources(entry["inbound_nodes"]):
            if (source, entry["name"]) not in edges:
                edges.append((source, entry["name"]))
    return edges


def _tensor_sources(serialized: Any) -> list[str]:
    """Names of the layers that produce the tensors referenced in serialized inbound nodes.

    A tensor is serialized as [layer name, node index, tensor index, ...]; it can sit at any depth
    of the nested lists and dicts (call arguments included), so walk them all.
    """
    if isinstance(serialized, dict):
        return [name for value in serialized.values() for name in _tensor_sources(value)]
    if not isinstance(serialized, (list, tuple)):
        return []
    if (
        len(serialized) >= 3
        and isinstance(serialized[0], str)
        and isinstance(serialized[1], int)
        and isinstance(serialized[2], int)
    ):
        return [serialized[0], *_tensor_sources(list(serialized[3:]))]
    return [name for item in serialized for name in _tensor_sources(item)]


def layout_layers(model: "tf_keras.Model") -> dict[str, tuple[float, float]]:
    """Place every layer: name -> (lane, depth), lanes one box apart, depth growing downwards.

    The depth is the longest path from an input, so every arrow points down. A layer with one
    parent takes the parent's lane, shifted so that the parent's children sit side by side (in
    the order the outputs use them, so `Add([a, b])` gets a's branch on the left); a layer with
    several parents (a merge) sits centred under them. Layers that would still share a spot in a
    row are pushed apart, keeping the row centred where it wanted to be.
    """
    edges = layer_edges(model)
    parents: dict[str, list[str]] = defaultdict(list)
    for source, target in edges:
        parents[target].append(source)
    outputs = _tensor_sources(model.get_config()["output_layers"])
    order = _graph_order([*outputs, *(layer.name for layer in model.layers)], parents)
    children: dict[str, list[str]] = defaultdict(list)
    for name in order:
        for parent in parents[name]:
            children[parent].append(name)

    depth: dict[str, int] = {}
    for name in order:
        depth[name] = max((depth[p] + 1 for p in parents[name]), default=0)

    lane: dict[str, float] = {}
    for row in range(max(depth.values()) + 1):
        wanted: dict[str, float] = {}
        for name in (n for n in order if depth[n] == row):
            if len(parents[name]) == 1:
                (parent,) = parents[name]
                siblings = children[parent]
                wanted[name] = lane[parent] + siblings.index(name) - (len(siblings) - 1) / 2
            elif parents[name]:
                wanted[name] = sum(lane[p] for p in parents[name]) / len(parents[name])
            else:  # an input; several inputs are spread apart by _spread_row
                wanted[name] = 0.0
        lane.update(_spread_row(wanted))
    return {name: (lane[name], float(depth[name])) for name in order}


def _graph_order(roots: list[str], parents: dict[str, list[str]]) -> list[str]:
    """All layers reachable upwards from `roots`, each after its parents, parents in call order.

    A depth-first walk from the outputs back through each layer's inputs in argument order,
    listing a layer once all its parents are listed: the order in which the model was most
    likely written. Iterative, so deep models do not hit the recursion limit.
    """
    order: list[str] = []
    seen: set[str] = set()
    for root in roots:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(parents[root]))]
        while stack:
            name, unvisited = stack[-1]
            parent = next((p for p in unvisited if p not in seen), None)
            if parent is None:
                stack.pop()
                order.append(name)
            else:
                seen.add(parent)
                stack.append((parent, iter(parents[parent])))
    return order


def _spread_row(wanted: dict[str, float]) -> dict[str, float]:
    """Lanes for one row: the wanted lanes, pushed apart where boxes would be less than a lane apart."""
    ordered = sorted(wanted, key=lambda name: wanted[name])
    placed: dict[str, float] = {}
    for i, name in enumerate(ordered):
        placed[name] = wanted[name] if i == 0 else max(wanted[name], placed[ordered[i - 1]] + 1.0)
    shift = sum(wanted.values()) / len(wanted) - sum(placed.values()) / len(placed)
    return {name: x + shift for name, x in placed.items()}


def _layer_kind(layer: "tf_keras.layers.Layer") -> str:
    """The colour group of a layer (a key of `_KIND_COLOURS`)."""
    class_name = type(layer).__name__
    if class_name == "InputLayer":
        return "input"
    if "Conv" in class_name:
        return "conv"
    if "Pooling" in class_name:
        return "pooling"
    if class_name == "Flatten":
        return "flatten"
    if class_name == "Dense":
        return "dense"
    if class_name in _MERGE_OR_ACTIVATION:
        return "merge/activation"
    return "other"


def _layer_settings(layer: "tf_keras.layers.Layer") -> str:
    """The layer's type and key settings, e.g. "Conv2D 20, 4x4, relu" or "Dense 160, linear"."""
    parts = []
    if hasattr(layer, "filters") and hasattr(layer, "kernel_size"):
        parts += [str(layer.filters), _dims(layer.kernel_size)]
        if any(step != 1 for step in layer.strides):
            parts.append(f"stride {_dims(layer.strides)}")
    elif hasattr(layer, "pool_size"):
        parts.append(_dims(layer.pool_size))
    elif hasattr(layer, "units"):
        parts.append(str(layer.units))
    if callable(getattr(layer, "activation", None)):
        parts.append(getattr(layer.activation, "__name__", type(layer.activation).__name__))
    settings = ", ".join(parts)
    return f"{type(layer).__name__} {settings}" if settings else type(layer).__name__


def _output_shape(layer: "tf_keras.layers.Layer") -> str:
    """The layer's output shape without the batch dimension, e.g. "52x44x20"."""
    try:
        shape = layer.output_shape
    except AttributeError:  # a shared layer whose calls give different shapes
        return "shape varies"
    shapes = shape if isinstance(shape, list) else [shape]
    return "; ".join(_dims([d if d is not None else "?" for d in s[1:]]) for s in shapes)


def _dims(values: Sequence[Any]) -> str:
    return "x".join(str(v) for v in values)


def _text_width(text: str, size: float, weight: str = "normal") -> float:
    """Width in inches of one line of text as the default font renders it."""
    return TextPath((0, 0), text, size=size, prop=FontProperties(weight=weight)).get_extents().width / 72


def draw_architecture(
    model: "tf_keras.Model", path: str | os.PathLike, title: str | None = None
) -> Figure:
    """Draw the layer graph of a functional model to a PNG at `path` and return the figure.

    Boxes show each layer's name, type, key settings and output shape, coloured by layer kind;
    arrows follow the graph. The PNG is written via a temporary file and a rename, so an
    interrupted run never leaves a half-written picture behind.
    Each box and its text carry the layer name as gid, so the returned figure can be inspected.
    """
    positions = layout_layers(model)
    labels = {layer.name: (_layer_settings(layer), _output_shape(layer)) for layer in model.layers}

    # Every box gets the size of the widest label, so the lanes line up.
    line = _LINE_SPACING / 72
    box_height = 2 * _BOX_PAD + line * (_NAME_FONT + 2 * _DETAIL_FONT)
    widest = max(
        max(_text_width(name, _NAME_FONT, "bold"), *(_text_width(text, _DETAIL_FONT) for text in details))
        for name, details in labels.items()
    )
    box_width = max(_MIN_BOX_WIDTH, widest + 2 * _BOX_PAD)
    lane_pitch = box_width + _LANE_GAP
    row_pitch = box_height + _ROW_GAP

    lanes = [lane for lane, _ in positions.values()]
    rows = max(depth for _, depth in positions.values()) + 1
    content_width = (max(lanes) - min(lanes)) * lane_pitch + box_width
    title_width = _text_width(title, 12, "bold") if title else 0.0
    width = max(_MIN_FIGURE_WIDTH, content_width, title_width) + 2 * _MARGIN
    height = rows * row_pitch + _TITLE_BAND + _LEGEND_BAND

    def centre(name: str) -> tuple[float, float]:
        lane, depth = positions[name]
        x = width / 2 + (lane - (max(lanes) + min(lanes)) / 2) * lane_pitch
        return x, height - _TITLE_BAND - (depth + 0.5) * row_pitch

    # One axes over the whole figure with data units of inches, so that text and boxes share a scale.
    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    if title:
        ax.text(
            width / 2, height - _TITLE_BAND / 2, title, ha="center", va="center", fontsize=12, weight="bold"
        )

    kinds = {layer.name: _layer_kind(layer) for layer in model.layers}
    for name, (settings, shape) in labels.items():
        x, y = centre(name)
        box = FancyBboxPatch(
            (x - box_width / 2, y - box_height / 2), box_width, box_height,
            boxstyle="round,pad=0,rounding_size=0.08",
            facecolor=_KIND_COLOURS[kinds[name]], edgecolor="#404040", linewidth=0.9, gid=name, zorder=2,
        )
        ax.add_patch(box)
        top = y + box_height / 2 - _BOX_PAD
        ax.text(x, top, name, ha="center", va="top", fontsize=_NAME_FONT, weight="bold", gid=name, zorder=3)
        ax.text(
            x, top - line * _NAME_FONT, f"{settings}\n{shape}",
            ha="center", va="top", fontsize=_DETAIL_FONT, linespacing=_LINE_SPACING, gid=name, zorder=3,
        )

    # Arrows leave and enter boxes on the side facing the other end, so that fan-outs and merges
    # read as separate arrows instead of one bundle through the box centre.
    reach = box_width / 3
    for source, target in layer_edges(model):
        (x0, y0), (x1, y1) = centre(source), centre(target)
        start = (x0 + max(-reach, min(reach, x1 - x0)), y0 - box_height / 2)
        end = (x1 + max(-reach, min(reach, x0 - x1)), y1 + box_height / 2)
        ax.add_patch(FancyArrowPatch(
            start, end, arrowstyle="-|>", mutation_scale=11, shrinkA=0, shrinkB=1,
            color="#404040", linewidth=1.0, zorder=1,
        ))

    present = [kind for kind in _KIND_COLOURS if kind in kinds.values()]
    ax.legend(
        handles=[Patch(facecolor=_KIND_COLOURS[k], edgecolor="#404040", label=k) for k in present],
        loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(present), 3),
        frameon=False, fontsize=8.5, handlelength=1.5, columnspacing=1.4,
    )

    with replacing(path) as tmp:
        fig.savefig(tmp, format="png")
    return fig


def draw_gallery(images: Sequence[np.ndarray | None], captions: Sequence[str], path: str | os.PathLike,
                 columns: int, title: str | None = None) -> Figure:
    """Draw face images (H, W, 3), pixels 0..255, in a grid with a caption under each; save a PNG.

    A None image leaves its cell empty, with its caption (if any) written in the middle. Cells are
    placed at fixed sizes in inches, so captions of several lines never overlap the next row.
    """
    rows = max(1, -(-len(images) // columns))
    shapes = [image.shape for image in images if image is not None]
    aspect = shapes[0][0] / shapes[0][1] if shapes else 55 / 47  # height / width
    image_width, gap = 1.1, 0.15
    image_height = image_width * aspect
    caption_height = 0.05 + 0.13 * max((caption.count("\n") + 1 for caption in captions), default=1)
    title_height = 0.2 + 0.17 * (title.count("\n") + 1) if title else 0.1
    cell_width, cell_height = image_width + gap, image_height + caption_height + gap
    width, height = max(columns * cell_width + gap, 4.0), rows * cell_height + title_height
    left = (width - columns * cell_width + gap) / 2
    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    if title:
        fig.text(0.5, 1 - 0.1 / height, title, ha="center", va="top", fontsize=9, weight="bold", linespacing=1.3)
    for index, (image, caption) in enumerate(zip(images, captions)):
        row, column = divmod(index, columns)
        bottom = height - title_height - (row + 1) * cell_height + caption_height + gap / 2
        ax = fig.add_axes((
            (left + column * cell_width) / width, bottom / height, image_width / width, image_height / height,
        ))
        if image is None:
            ax.axis("off")
            ax.text(0.5, 0.5, caption, ha="center", va="center", fontsize=7, transform=ax.transAxes)
            continue
        ax.imshow(np.clip(image, 0, 255).astype(np.uint8), interpolation="nearest", aspect="auto")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(caption, fontsize=7, linespacing=1.1, labelpad=2)
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png")
    return fig


def draw_mistakes(evaluation: "Evaluation", path: str | os.PathLike, heading: str, columns: int = 6) -> Figure:
    """The gallery of what G gets wrong (the examples an evaluation kept): one row per data file and
    kind of mistake, each face captioned with its true label, the BadNet's class and G's ("N" =
    flagged as a backdoor); the title gives G's rates on each file."""
    backdoor_class = evaluation.num_classes

    def label(value: int | None) -> str:
        return "?" if value is None else "N" if value == backdoor_class else str(value)

    groups: dict[tuple[str, str], list[Mistake]] = {}
    for mistake in evaluation.mistakes:
        groups.setdefault((mistake.data, mistake.kind), []).append(mistake)
    cells: list[np.ndarray | None] = []
    captions: list[str] = []
    for (data, kind), members in groups.items():
        for start in range(0, len(members), columns):
            row = members[start : start + columns]
            cells += [m.image for m in row] + [None] * (columns - len(row))
            captions += [
                f"{data}\n{kind}\ntrue {label(m.true_label)}\nBadNet {label(m.original)}, G {label(m.detector)}"
                for m in row
            ] + [""] * (columns - len(row))
    if not cells:
        cells, captions = [None], ["G made no mistakes on these inputs"]

    lines = [heading]
    if evaluation.clean is not None:
        lines.append(f"clean data: G {evaluation.clean.accuracy_detector_pct:.2f}% correct")
    lines += [f"{p.name}: {p.asr_detector_pct:.2f}% get through, {p.detected_pct:.2f}% flagged"
              for p in evaluation.poisoned]
    return draw_gallery(cells, captions, path, columns=columns, title="\n".join(lines))


_CURVE_COLOURS = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b")


def _below_title(fig: Figure, lines: int) -> tuple[float, float, float, float]:
    """The rectangle `tight_layout` may fill so that the panels stay clear of a `lines`-line title,
    whatever the figure's height (a fixed fraction would overlap on tall figures)."""
    title_inches = 0.25 * lines + 0.15
    return (0, 0, 1, 1 - title_inches / fig.get_figheight())


def draw_pruning_curves(curves: dict[str, Sequence["SweepPoint"]], path: str | os.PathLike, layer: str,
                        marks: dict[str, "SweepPoint"] | None = None) -> Figure:
    """The Fine-Pruning paper's pruning curve, one panel per BadNet: clean accuracy and each
    trigger's attack success against the share of `layer`'s channels pruned (least active first).
    `marks` draws a dashed line at a chosen point per BadNet (e.g. where the accuracy budget stops)."""
    columns = min(2, len(curves))
    rows = -(-len(curves) // columns)
    fig = Figure(figsize=(max(6.6, 5.2 * columns), 3.4 * rows), dpi=110)  # wide enough for the title
    FigureCanvasAgg(fig)
    for index, (name, points) in enumerate(curves.items()):
        ax = fig.add_subplot(rows, columns, index + 1)
        pruned = [100 * p.fraction_pruned for p in points]
        ax.plot(pruned, [p.clean_accuracy_pct for p in points], color="black", linewidth=1.8, label="clean accuracy")
        for colour, trigger in zip(_CURVE_COLOURS, points[0].attack_success_pct):
            ax.plot(pruned, [p.attack_success_pct[trigger] for p in points], color=colour, linewidth=1.4,
                    label=f"attack success: {trigger}")
        if marks and name in marks:
            ax.axvline(100 * marks[name].fraction_pruned, color="#606060", linestyle="--", linewidth=1,
                       label="4-point accuracy budget")
        ax.set_title(name, fontsize=10)
        ax.set_xlim(0, 100)
        ax.set_ylim(-2, 102)
        ax.set_xlabel(f"{layer} channels pruned (%)", fontsize=9)
        ax.set_ylabel("%", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("Pruning curves\n(channels removed in increasing order of mean activation on clean data)",
                 fontsize=10, weight="bold")
    fig.tight_layout(rect=_below_title(fig, lines=2))
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png")
    return fig


NOTHING_LOST = 0.05  # points of accuracy lost at or below which the trade-off figure draws at its left edge
_METHOD_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf", "#000000", "#aec7e8", "#98df8a", "#ff9896")


def draw_tradeoff(curves: dict[str, dict[str, Sequence[Any]]], path: str | os.PathLike,
                  budget_points: float) -> Figure:
    """One panel per net: for each method, G's attack success (worst trigger) against the clean
    accuracy G loses, one point per strength its rule measured, joined in order; a large ringed
    marker on the point the method returns at its defaults (the rule's choice); a loss of at most
    NOTHING_LOST points is drawn at NOTHING_LOST, unjoined. `curves` maps a
    net to method labels to points with `g_accuracy_lost_points`, `g_asr_pct` and `chosen`."""
    columns = min(3, len(curves))
    rows = -(-len(curves) // columns)
    fig = Figure(figsize=(5.0 * columns, 4.4 * rows + 1.2), dpi=110)
    FigureCanvasAgg(fig)
    labels = list(dict.fromkeys(label for methods in curves.values() for label in methods))
    colours = {label: _METHOD_COLOURS[i % len(_METHOD_COLOURS)] for i, label in enumerate(labels)}
    for index, (name, methods) in enumerate(curves.items()):
        ax = fig.add_subplot(rows, columns, index + 1)
        for label, points in methods.items():
            lost = [max(p.g_accuracy_lost_points, NOTHING_LOST) for p in points]
            asr = [p.g_asr_pct for p in points]
            ax.plot(lost, asr, color=colours[label], linestyle="none", marker="o", markersize=3, alpha=0.8)
            # Lines join consecutive settings, but not to a net that lost nothing (the BadNet itself,
            # offered as round 0, or a rung that pruned nothing): that join would cross the panel.
            for start in range(len(points) - 1):
                pair = slice(start, start + 2)
                if min(lost[pair]) > NOTHING_LOST:
                    ax.plot(lost[pair], asr[pair], color=colours[label], linewidth=1, alpha=0.8)
            for p, x, y in zip(points, lost, asr):
                if p.chosen:
                    ax.plot([x], [y], color=colours[label], marker="o", markersize=9, markerfacecolor="none",
                            markeredgewidth=2)
        ax.axvline(budget_points, color="#606060", linestyle="--", linewidth=1)
        ax.axhline(1.0, color="#606060", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlim(0.8 * NOTHING_LOST, 100)
        ax.set_ylim(-2, 102)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("G's clean accuracy lost (points, log scale)", fontsize=9)
        ax.set_ylabel("G's attack success, worst trigger (%)", fontsize=9)
        ax.grid(alpha=0.3)
    handles = [Patch(color=colours[label], label=label) for label in labels]
    fig.legend(handles=handles, loc="lower center", ncol=min(7, len(labels)), fontsize=8, frameon=False)
    fig.suptitle("What each method trades: attack success against clean accuracy as its strength varies\n"
                 f"(ringed: the point its clean-data rule picks at its defaults; dashed: {budget_points:g}-point "
                 "budget; dotted: the 1% bar)", fontsize=10, weight="bold")
    fig.tight_layout(rect=(0, 0.1 if rows == 1 else 0.06, 1, 1))
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png")
    return fig


def draw_channel_activations(panels: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]],
                             path: str | os.PathLike, layer: str) -> Figure:
    """Where each backdoor lives: per BadNet, the mean activation of every `layer` channel on clean
    data (bars) and on each trigger's poisoned data (markers), channels in Fine-Pruning's order
    (pruned first on the left). A backdoor Fine-Pruning can remove shows up on the left."""
    columns = min(2, len(panels))
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(5.2 * columns, 3.2 * rows), dpi=110)
    FigureCanvasAgg(fig)
    for index, (name, (clean, poisoned)) in enumerate(panels.items()):
        order = np.argsort(clean, kind="stable")
        ax = fig.add_subplot(rows, columns, index + 1)
        positions = np.arange(len(order))
        ax.bar(positions, clean[order], color="#9ecae1", width=0.85, label="clean")
        for colour, (trigger, values) in zip(_CURVE_COLOURS, poisoned.items()):
            ax.plot(positions, values[order], "o", markersize=3, color=colour, label=trigger)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(f"{layer} channels, least active on clean data first", fontsize=9)
        ax.set_ylabel("mean activation", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Channel activations on clean and on poisoned data", fontsize=10, weight="bold")
    fig.tight_layout(rect=_below_title(fig, lines=1))
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png")
    return fig


def draw_reversed_trigger(trigger: "ReversedTrigger", faces: np.ndarray, path: str | os.PathLike,
                          heading: str) -> Figure:
    """One reversed trigger: its mask (white = stamped), the stamp itself (pattern where the mask
    is), and the trigger stamped on a few clean faces with the class the net then gives each."""
    mask = np.repeat(trigger.mask[..., None] * 255.0, 3, axis=2)
    stamp = trigger.mask[..., None] * trigger.pattern + (1 - trigger.mask[..., None]) * 255.0
    images = [mask, stamp, *trigger.stamp(faces)]
    captions = [f"mask: {trigger.mask_share_pct:.2f}%\nof the image", "stamp\n(pattern on the mask)",
                *(f"stamped face {n + 1}" for n in range(len(faces)))]
    return draw_gallery(images, captions, path, columns=len(images), title=heading)


def _strip_figure() -> tuple[Figure, Any]:
    """A wide, low figure with one panel: the strips of inspect_net.py's statistics."""
    fig = Figure(figsize=(7.0, 2.6), dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save_strip(fig: Figure, ax: Any, heading: str, path: str | os.PathLike, legend_at: str) -> Figure:
    """Grid, legend and title on a strip figure, then write it as PNG via a temporary file."""
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, loc=legend_at)
    ax.set_title(heading, fontsize=9, weight="bold")
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png")
    return fig


def draw_mask_sizes(examined: Sequence["ExaminedClass"], threshold_pct: float, path: str | os.PathLike,
                    heading: str, threshold_label: str = "flagged below this size") -> Figure:
    """The reversed triggers' mask sizes over the classes examined, with the size below which a
    class is flagged: a backdoor target stands out on the left."""
    fig, ax = _strip_figure()
    kinds = [("ordinary (drawn at random)", lambda e: not (e.proposed or e.asked or e.flagged), "#7f7f7f", "o"),
             ("proposed by the untargeted search", lambda e: e.proposed and not e.flagged, "#1f77b4", "s"),
             ("asked for", lambda e: e.asked and not e.proposed and not e.flagged, "#2ca02c", "^"),
             ("flagged", lambda e: e.flagged, "#d62728", "D")]
    jitter = np.random.default_rng(0).uniform(-0.25, 0.25, len(examined))
    for label, chosen, colour, marker in kinds:
        picked = [(e, j) for e, j in zip(examined, jitter) if chosen(e)]
        if picked:
            ax.scatter([e.mask_share_pct for e, _ in picked], [j for _, j in picked], color=colour, marker=marker,
                       s=36, label=label, zorder=3)
            for e, j in picked:
                if e.flagged or e.proposed or e.asked:
                    ax.annotate(str(e.target), (e.mask_share_pct, j), textcoords="offset points", xytext=(4, 4),
                                fontsize=7)
    ax.axvline(threshold_pct, color="#d62728", linestyle="--", linewidth=1, label=threshold_label)
    ax.set_yticks([])
    ax.set_ylim(-1, 1)
    ax.set_xlim(left=0)
    ax.set_xlabel("reversed trigger's mask size (% of the image)", fontsize=9)
    return _save_strip(fig, ax, heading, path, "upper right")



def draw_margins(margins: np.ndarray, flagged: Sequence[int], path: str | os.PathLike, heading: str,
                 space: str = "the clean feature range") -> Figure:
    """Every class's maximum margin (searched over `space`) as a histogram, the flagged classes
    marked: a backdoor target stands out on the right."""
    fig, ax = _strip_figure()
    ax.hist(margins, bins=60, color="#7f7f7f", label=f"{len(margins)} classes")
    for number, target in enumerate(flagged):
        ax.axvline(margins[target], color="#d62728", linewidth=1.2, label="flagged" if number == 0 else None)
        ax.annotate(str(target), (margins[target], 0.9), xycoords=("data", "axes fraction"), xytext=(3, 0),
                    textcoords="offset points", fontsize=7, color="#d62728")
    ax.set_xlabel(f"maximum margin over {space} (logit units)", fontsize=9)
    ax.set_ylabel("classes", fontsize=9)
    return _save_strip(fig, ax, heading, path, "upper center")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Command line: draw the challenge architecture to a PNG."""
    parser = ArgumentParser(
        prog="python -m fineprune.plots",
        description="Draw the CSAW-HackML-2020 BadNet architecture (as built by this package) to a PNG.",
    )
    parser.add_argument("output", help="where to write the PNG, e.g. model_architecture.png")
    parser.add_argument(
        "--num-classes", type=_positive_int, default=1283,
        help="number of output classes (default: %(default)s, the people in the challenge data)",
    )
    args = parser.parse_args(argv)

    quiet_tensorflow()
    from fineprune.models import build_challenge_model

    model = build_challenge_model(num_classes=args.num_classes)
    draw_architecture(model, args.output, title=f"BadNet architecture ({args.num_classes} classes)")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
