"""`anp`: Adversarial Neuron Pruning (Wu & Wang, NeurIPS 2021), for a net without batch normalisation.

Backdoor neurons are the ones whose small perturbation most easily breaks the net on clean data.
ANP gives every neuron (each output channel of a convolutional layer, each unit of a hidden Dense
layer) a mask m in [0, 1] and multiplicative noise on its weights and bias, (m + d) * w and
(m + e) * b with |d|, |e| <= `epsilon`, as the authors advise for nets without batch
normalisation. Each step on a batch of the clean training part:
1. the noise starts at random inside the budget and takes one signed-gradient ascent step of size
   `epsilon` on the clean loss (the reference's single step), clipped back into the budget (the
   reference does not clip after that step, so its noise may reach twice `epsilon`);
2. the masks take one SGD step (momentum 0.9) on w * loss(masked net) + (1 - w) *
   loss(masked and perturbed net), w = `unperturbed_weight` (the paper's alpha), then are clipped.
Then, as the reference prunes by default, every neuron whose final mask is below a threshold is
removed (kernel slice and bias zeroed); the reference sweeps the threshold in steps of 0.05 and
picks none (BackdoorBench picks it by attack success, which needs poisoned data). Here the
strength rule (`strength`) picks it from clean data alone: the highest of `THRESHOLDS` (0 prunes
nothing) whose held-out accuracy stays within `accuracy_budget` points of the BadNet's. The
repaired file records the masks' statistics, so that a run whose masks did not move, or all
collapsed, shows it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tf_keras

from fineprune.data import LabelledImages
from fineprune.defenses.channels import zero_channels
from fineprune.defenses.core import RepairResult, RepairRun, RepairSettings, option
from fineprune.defenses.registry import register
from fineprune.defenses.strength import ACCURACY_BUDGET, ACCURACY_BUDGET_HELP, strongest_within_budget
from fineprune.models import LoadedModel, copy_model, output_layer, scale_inputs
from fineprune.progress import Progress, silent


@dataclass(frozen=True)
class NeuronPruningSettings(RepairSettings):
    """`anp`: the reference's perturbation budget, trade-off and mask learning rate."""

    method: str = "anp"
    epsilon: float = option(0.4, "bound of the multiplicative noise on each neuron's weights and bias", "E",
                            low=0, high=1)
    unperturbed_weight: float = option(0.2, "weight of the unperturbed loss against the perturbed one (the "
                                       "paper's alpha)", "W", low=0, high=1)
    mask_learning_rate: float = option(0.2, "SGD learning rate of the neuron masks", "LR", low=0, low_open=True)
    iterations: int = option(500, "mask optimisation steps", "N", low=1)
    mask_batch_size: int = option(64, "images per mask optimisation step", "N", low=1)
    accuracy_budget: float = option(ACCURACY_BUDGET, ACCURACY_BUDGET_HELP, "POINTS", low=0)


THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(18, 0, -1)) + (0.0,)  # 0.9 ... 0.05, then none pruned


class PerturbedNeurons(tf_keras.layers.Layer):
    """A Conv2D or Dense layer computed with a mask and noise per output neuron; it reads the
    wrapped layer's own kernel and bias, which stay unchanged."""

    def __init__(self, inner: tf_keras.layers.Layer) -> None:
        super().__init__(name=f"{inner.name}_perturbed")
        self.inner = inner
        neurons = inner.filters if isinstance(inner, tf_keras.layers.Conv2D) else inner.units
        self.mask = tf.Variable(tf.ones(neurons), trainable=False, name="mask")
        self.noise_kernel = tf.Variable(tf.zeros(neurons), trainable=False, name="noise_kernel")
        self.noise_bias = tf.Variable(tf.zeros(neurons), trainable=False, name="noise_bias")
        self.perturbed = tf.Variable(False, trainable=False, name="perturbed")

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        kernel_scale = self.mask + tf.where(self.perturbed, self.noise_kernel, 0.0)
        bias_scale = self.mask + tf.where(self.perturbed, self.noise_bias, 0.0)
        kernel = self.inner.kernel * kernel_scale  # the last kernel axis is the output neuron
        if isinstance(self.inner, tf_keras.layers.Conv2D):
            output = self.inner.convolution_op(inputs, kernel)
        else:
            output = tf.matmul(inputs, kernel)
        return self.inner.activation(tf.nn.bias_add(output, self.inner.bias * bias_scale))


@register("anp", "Adversarial Neuron Pruning: learn which neurons a small perturbation turns against clean data, "
          "prune them", NeuronPruningSettings, order=40)
def adversarial_neuron_pruning(badnet: LoadedModel, clean: LabelledImages, settings: NeuronPruningSettings,
                               progress: Progress = silent) -> RepairResult:
    """Learn the neuron masks on the clean training part, prune below the chosen threshold; the
    BadNet is untouched."""
    run = RepairRun.start(badnet, clean, settings)
    model = copy_model(badnet.model)
    masks = learn_masks(model, run, settings, progress)
    total = sum(len(mask) for mask in masks.values())
    repaired, choice = strongest_within_budget("mask_threshold", THRESHOLDS,
                                               lambda threshold: pruned_copy(model, below(masks, threshold)),
                                               run.heldout_accuracy_pct, run.accuracy_before_pct,
                                               settings.accuracy_budget, lambda line: progress(f"anp: {line}"))
    pruned = below(masks, choice.chosen)
    count = sum(len(neurons) for neurons in pruned.values())
    return run.finish(repaired, 0, pruned_channels=pruned, removed=f"{count}/{total} neurons",
                      details={"strength": choice.record(), "mask_statistics": mask_statistics(masks),
                               "neurons_pruned_per_layer": {layer: len(n) for layer, n in pruned.items()}})


def learn_masks(model: tf_keras.Model, run: RepairRun, settings: NeuronPruningSettings,
                progress: Progress) -> dict[str, np.ndarray]:
    """ANP's min-max optimisation; returns the final mask of every hidden Conv2D and Dense layer."""
    head = output_layer(model)
    wrappers: dict[str, PerturbedNeurons] = {}

    def wrap(layer: tf_keras.layers.Layer) -> tf_keras.layers.Layer:
        if isinstance(layer, (tf_keras.layers.Conv2D, tf_keras.layers.Dense)) and layer is not head:
            wrappers[layer.name] = PerturbedNeurons(layer)
            return wrappers[layer.name]
        return layer

    perturbable = tf_keras.models.clone_model(model, clone_function=wrap)
    masks = [w.mask for w in wrappers.values()]
    noises = [v for w in wrappers.values() for v in (w.noise_kernel, w.noise_bias)]
    optimizer = tf_keras.optimizers.SGD(settings.mask_learning_rate, momentum=0.9)
    loss_of = tf_keras.losses.SparseCategoricalCrossentropy()
    epsilon = settings.epsilon

    def set_perturbed(value: bool) -> None:
        for wrapper in wrappers.values():
            wrapper.perturbed.assign(value)

    @tf.function
    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        for noise in noises:  # a random start inside the budget, then one ascent step of size epsilon
            noise.assign(tf.random.uniform(noise.shape, -epsilon, epsilon))
        set_perturbed(True)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(noises)
            loss = loss_of(y, perturbable(x, training=False))
        for noise, gradient in zip(noises, tape.gradient(loss, noises)):
            noise.assign(tf.clip_by_value(noise + epsilon * tf.sign(gradient), -epsilon, epsilon))
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(masks)
            set_perturbed(True)
            robust = loss_of(y, perturbable(x, training=False))
            set_perturbed(False)
            natural = loss_of(y, perturbable(x, training=False))
            loss = settings.unperturbed_weight * natural + (1.0 - settings.unperturbed_weight) * robust
        optimizer.apply_gradients(zip(tape.gradient(loss, masks), masks))
        for mask in masks:
            mask.assign(tf.clip_by_value(mask, 0.0, 1.0))
        return loss

    rng = np.random.default_rng(settings.seed)
    x_train, y_train = run.x_train, run.y_train
    for iteration in range(settings.iterations):
        chosen = rng.integers(0, len(x_train), settings.mask_batch_size)
        loss = step(tf.constant(scale_inputs(x_train[chosen], run.badnet.input_scale), tf.float32),
                    tf.constant(y_train[chosen]))
        if (iteration + 1) % 100 == 0:
            progress(f"anp: step {iteration + 1}/{settings.iterations}, loss {float(loss):.3f}")
    return {name: wrapper.mask.numpy() for name, wrapper in wrappers.items()}


def below(masks: dict[str, np.ndarray], threshold: float) -> dict[str, list[int]]:
    """Per layer, the neurons whose mask is below `threshold` (layers with none left out)."""
    chosen = {name: [int(n) for n in np.flatnonzero(mask < threshold)] for name, mask in masks.items()}
    return {name: neurons for name, neurons in chosen.items() if neurons}


def mask_statistics(masks: dict[str, np.ndarray]) -> dict[str, object]:
    """What the learned masks look like: how many fell below 0.2 (the reference's usual threshold),
    their quantiles over every neuron, and each layer's mean."""
    everyone = np.concatenate(list(masks.values()))
    return {"neurons": int(everyone.size), "below_0.2": int(np.sum(everyone < 0.2)),
            "quantiles": {f"{q:g}": float(np.quantile(everyone, q)) for q in (0.0, 0.1, 0.5, 0.9, 1.0)},
            "layer_means": {name: float(np.mean(mask)) for name, mask in masks.items()}}


def pruned_copy(model: tf_keras.Model, neurons: dict[str, list[int]]) -> tf_keras.Model:
    """A copy of `model` with the given neurons of each layer removed (kernel slice and bias zeroed,
    so each outputs activation(0))."""
    copy = copy_model(model)
    for name, chosen in neurons.items():
        zero_channels(copy.get_layer(name), np.array(chosen, dtype=np.int64))
    return copy
