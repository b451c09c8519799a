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
Then neurons are pruned in increasing order of their final mask (kernel slice and bias zeroed),
`prune_step` more at a time, for as long as held-out accuracy stays within `max_accuracy_drop`
points of the BadNet's: the reference's pruning by number (its scripts sweep the number and choose
none; BackdoorBench chooses by attack success, which needs poisoned data), chosen here on clean
held-out data only.
(Pruning by mask threshold, its other mode, moves in steps of 0.05 that here already remove more
neurons at the first step than the budget allows.)
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
    max_accuracy_drop: float = option(2.0, "prune as many neurons, lowest mask first, as keep held-out accuracy "
                                      "within this many points", "POINTS", low=0)
    prune_step: int = option(5, "neurons added to the pruned set at each held-out check", "N", low=1)


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
    pruned: dict[str, list[int]] = {}
    for count in range(settings.prune_step, total + 1, settings.prune_step):
        candidate = lowest(masks, count)
        accuracy = run.heldout_accuracy_pct(pruned_copy(model, candidate))
        if accuracy < run.accuracy_before_pct - settings.max_accuracy_drop:
            break
        pruned = candidate
    count = sum(len(neurons) for neurons in pruned.values())
    largest = max((float(masks[layer][n]) for layer, neurons in pruned.items() for n in neurons), default=None)
    return run.finish(pruned_copy(model, pruned), 0, pruned_channels=pruned, removed=f"{count}/{total} neurons",
                      details={"largest_mask_pruned": largest,
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


def lowest(masks: dict[str, np.ndarray], count: int) -> dict[str, list[int]]:
    """Per layer, which of the `count` neurons with the lowest masks over all layers it holds
    (ties in layer order)."""
    everyone = [(float(value), position, name, neuron) for position, (name, mask) in enumerate(masks.items())
                for neuron, value in enumerate(mask)]
    chosen: dict[str, list[int]] = {}
    for _, _, name, neuron in sorted(everyone)[:count]:
        chosen.setdefault(name, []).append(neuron)
    return {name: sorted(neurons) for name, neurons in chosen.items()}


def pruned_copy(model: tf_keras.Model, neurons: dict[str, list[int]]) -> tf_keras.Model:
    """A copy of `model` with the given neurons of each layer removed (kernel slice and bias zeroed,
    so each outputs activation(0))."""
    copy = copy_model(model)
    for name, chosen in neurons.items():
        zero_channels(copy.get_layer(name), np.array(chosen, dtype=np.int64))
    return copy
