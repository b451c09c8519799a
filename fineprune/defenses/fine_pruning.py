"""Fine-Pruning (Liu, Dolan-Gavitt, Garg, RAID 2018) and its two halves as baselines.

The backdoor tends to live in channels of a late convolutional layer that clean inputs leave
dormant, so Fine-Pruning removes channels in increasing order of their mean activation on clean
data, as far as a clean-accuracy budget allows, then fine-tunes on clean data.

- `activation`: prune `layer`'s channels, least active on the clean training part first, until
  held-out accuracy has fallen by `accuracy_budget` points (or exactly `prune_fraction` of
  them), then fine-tune with the pruned channels held at zero;
- `prune`: the pruning step alone (`ChannelPruningSettings`: no fine-tuning options);
- `finetune`: the fine-tuning step alone (`TunedFineTuningSettings`: no pruning options).

Fine-tuning's learning rate is the strength rule's (`strength`): the strongest within the budget.

Each has a settings class with exactly the options it uses, so that an option given to the
wrong one is refused (`registry.Defense.settings`), not silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tf_keras

from fineprune.data import LabelledImages
from fineprune.defenses.channels import (
    HoldChannelsAtZero,
    channel_indices,
    conv_layer,
    mean_channel_activations,
    pruning_order,
    zero_channels,
)
from fineprune.defenses.core import RepairResult, RepairRun, RepairSettings, TunedFineTuningSettings, option
from fineprune.defenses.strength import ACCURACY_BUDGET
from fineprune.defenses.registry import register
from fineprune.errors import InputError
from fineprune.models import LoadedModel, copy_model
from fineprune.progress import Progress, silent


@dataclass(frozen=True)
class ChannelPruningSettings(RepairSettings):
    """`prune`: which layer's channels, and how many."""

    method: str = "prune"
    layer: str = option("conv_3", "the convolutional layer whose channels are pruned", "NAME")
    accuracy_budget: float = option(ACCURACY_BUDGET, "prune (and, with fine-tuning, choose its learning rate) "
                                    "while held-out accuracy stays within this many points of the BadNet's", "POINTS",
                                    low=0)
    prune_fraction: float | None = option(None, "prune exactly this share of the channels instead of using the "
                                          "budget", "F", kind=float, low=0, high=1, low_open=True, high_open=True,
                                          unset="the budget decides")
    channels: tuple[int, ...] | None = None  # prune exactly these, found by other means (analysis only)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.channels is not None and (self.prune_fraction is not None or not self.channels):
            raise InputError("give either a non-empty list of channels or --prune-fraction, not both")


@dataclass(frozen=True)
class ActivationPruningSettings(TunedFineTuningSettings, ChannelPruningSettings):
    """Fine-Pruning (`activation`): the pruning step's options and the fine-tuning's."""

    method: str = "activation"


def fine_prune(badnet: LoadedModel, clean: LabelledImages,
               settings: TunedFineTuningSettings | ChannelPruningSettings, progress: Progress = silent) -> RepairResult:
    """Fine-Pruning or one of its halves, as the settings' class says: pruning settings prune,
    fine-tuning settings fine-tune; the BadNet is untouched. Every decision uses the clean data
    alone: channels are ranked on the training part, the budget is checked on the held-out part."""
    run = RepairRun.start(badnet, clean, settings)
    model = copy_model(badnet.model)
    pruned: list[int] = []
    if isinstance(settings, ChannelPruningSettings):
        pruned = prune_within_budget(model, run, settings)
    steps, details = 0, {}
    if isinstance(settings, TunedFineTuningSettings):
        callbacks = [HoldChannelsAtZero(settings.layer, pruned)] if pruned else []
        pruned_net = model
        model, steps, choice = run.tuned_fine_tune(lambda: copy_model(pruned_net), settings, callbacks, progress)
        details["strength"] = choice.record()
    if not isinstance(settings, ChannelPruningSettings):
        return run.finish(model, steps, details=details)
    filters = conv_layer(model, settings.layer).filters
    return run.finish(model, steps, pruned_channels={settings.layer: pruned}, details=details,
                      removed=f"{len(pruned)}/{filters} {settings.layer} channels")


# The baselines come first in --help and the comparison, then the method they are the halves of.
for _order, _name, _summary, _settings in (
    (1, "finetune", "Fine-Pruning's fine-tuning step alone", TunedFineTuningSettings),
    (2, "prune", "Fine-Pruning's pruning step alone", ChannelPruningSettings),
    (3, "activation", "Fine-Pruning: prune --layer's least active channels on clean data, then fine-tune",
     ActivationPruningSettings),
):
    register(_name, _summary, _settings, _order)(fine_prune)


def prune_within_budget(model: tf_keras.Model, run: RepairRun, settings: ChannelPruningSettings) -> list[int]:
    """Zero `settings.layer`'s channels of `model` in increasing order of mean activation on the
    clean training part, as far as the budget allows; returns the pruned channels in pruning order."""
    layer = conv_layer(model, settings.layer)
    if settings.channels is not None:
        zero_channels(layer, channel_indices(settings.channels, layer))
        return [int(c) for c in settings.channels]
    order = pruning_order(mean_channel_activations(model, settings.layer, run.x_train, run.badnet.input_scale))
    if settings.prune_fraction is not None:
        pruned = [int(c) for c in order[: round(settings.prune_fraction * len(order))]]
        zero_channels(layer, np.array(pruned, dtype=np.int64))
        return pruned
    pruned = []
    for channel in order[:-1]:  # never the last channel: the layer would output nothing at all
        kept = layer.get_weights()
        zero_channels(layer, np.array([channel]))
        if run.heldout_accuracy_pct(model) < run.accuracy_before_pct - settings.accuracy_budget:
            layer.set_weights(kept)
            break
        pruned.append(int(channel))
    return pruned
