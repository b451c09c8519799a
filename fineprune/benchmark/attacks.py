"""Backdoor attacks that make the benchmark's BadNets.

- BadNets (Gu et al. 2017/2019): poison a share of the training images, each wearing one of the
  attacker's triggers and relabelled with that trigger's target, and train as usual.
- The pruning-aware attack (Liu, Dolan-Gavitt, Garg, RAID 2018, section 4): train on clean data,
  prune the last convolutional layer's channels that clean data leaves dormant, train the backdoor
  into the remaining channels (the pruned ones held at zero), then restore the pruned channels
  with biases lowered so that they stay dormant.
  The backdoor then lives in channels that clean data uses, so pruning dormant channels, the
  first step of Fine-Pruning, does not find it.
- Feature collision, an adaptive attack on the output-layer defenses (`maxmargin`, `head`): after
  clean training, the backdoor is trained with two more terms in the loss, one that pulls the
  penultimate features of triggered faces towards the mean features of the target's own clean
  faces (as feature-collision poisoning does, Shafahi et al., NeurIPS 2018) and one that keeps the
  target's output weight norm and bias at the other classes' mean. The trigger then reaches the
  target the way the target's own faces do: nothing in the output layer stands out, and triggered
  features stay within the clean span.

The attacker trains on its own images from the same generator (the "train" split), never on the
defender's validation or test files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from fineprune import __version__
from fineprune.benchmark.build import DATA_SEED, BadNetSpec, provenance, render_split
from fineprune.benchmark.zoo import COVER_FORMS, POISONING_FORMS
from fineprune.data import check_same_data, load_dataset
from fineprune.defenses.channels import HoldChannelsAtZero, mean_channel_activations, pruning_order
from fineprune.errors import InputError
from fineprune.metrics import accuracy_pct, attack_success_pct
from fineprune.models import (
    LoadedModel,
    build_challenge_model,
    in_batches,
    layer_model,
    penultimate_features,
    save_model,
    traced_call,
)

PRUNE_LAYER = "conv_3"


@dataclass(frozen=True)
class TrainingRecipe:
    """How a BadNet is trained (recorded in the model file).

    The defaults are the benchmark's first calibration against the real BadNets' signatures (see
    `fidelity`), kept for the extra attacks: Adam, whose large `epsilon` keeps the tiny gradients
    of the 1282 classes a face is not from from being blown up to full steps; L2 on the kernels for
    the real nets' weight scale; label smoothing for their moderate logit margins. It put every
    backdoor in an output column that stands out, unlike the real ones; the four BadNets and the
    clean nets now use `BADNET_RECIPE` (below).
    """

    images_per_identity: int = 48
    poison_rate: float = 0.1  # share of training images that wear a trigger
    cover_rate: float = 0.0  # share that wear the trigger's cover form and keep their label (`zoo.COVER_FORMS`)
    epochs: int = 7
    batch_size: int = 64
    optimizer: str = "adam"  # "adam", "sgd" (with momentum) or "adadelta" (rho 0.95, epsilon 1e-7, Keras 2's)
    learning_rate: float = 1e-3  # peak: a linear warm-up to it over the first epoch, then a cosine decay
    final_learning_rate: float = 0.1  # where the cosine decay ends, relative to the peak
    momentum: float = 0.9  # SGD
    epsilon: float = 1e-3  # Adam
    weight_decay: float = 1e-4  # L2 on the kernels (not the biases) of these layers (all when empty):
    weight_decay_layers: tuple[str, ...] = ()
    label_smoothing: float = 0.05
    seed: int = 0
    clean_epochs: int = 0  # epochs on the clean images first: the backdoor then fine-tuned into a clean net
    pruning_aware: bool = False
    dormant_fraction: float = 0.6  # pruning-aware attack: share of conv_3 channels treated as dormant
    feature_collision: float = 0.0  # weight of the pull of triggered features to the target's clean mean
    output_camouflage: float = 0.0  # weight of the pull of the target's output weights and bias to the mean

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.pruning_aware and self.clean_epochs < 1:
            raise ValueError("the pruning-aware attack needs clean_epochs >= 1 (it prunes a clean net)")
        if self.feature_collision < 0 or self.output_camouflage < 0:
            raise ValueError("feature_collision and output_camouflage must be at least 0")
        if self.feature_collision and self.clean_epochs < 1:
            raise ValueError("feature collision needs clean_epochs >= 1 (the target's clean features come first)")
        if self.feature_collision and self.pruning_aware:
            raise ValueError("feature collision and the pruning-aware attack are separate attacks")
        if not (0 <= self.poison_rate < 1 and 0 <= self.cover_rate < 1 and self.poison_rate + self.cover_rate < 1):
            raise ValueError("poison_rate and cover_rate must be in [0, 1) and leave some images clean")


OPTIMIZERS = ("adam", "sgd", "adadelta")


def recipe_with(recipe: TrainingRecipe, assignments: Sequence[str]) -> TrainingRecipe:
    """`recipe` with `KEY=VALUE` assignments applied (each value read as its field's type), or
    InputError naming the first that does not fit."""
    settable = [f.name for f in dataclass_fields(recipe) if f.name != "weight_decay_layers"]  # a tuple of names
    changes: dict[str, object] = {}
    for assignment in assignments:
        key, equals, text = assignment.partition("=")
        if not equals or key not in settable:
            raise InputError(f"--set {assignment}: not KEY=VALUE with KEY one of {', '.join(settable)}")
        kind = type(getattr(recipe, key))
        try:
            changes[key] = (text.lower() in ("1", "true", "yes")) if kind is bool else kind(text)
        except ValueError:
            raise InputError(f"--set {assignment}: {text!r} is not a {kind.__name__}") from None
    try:
        return replace(recipe, **changes)
    except ValueError as error:
        raise InputError(f"--set: {error}") from None


@dataclass
class TrainingSet:
    """The attacker's training images (pixels 0..255), labels, and which trigger each wears."""

    x: np.ndarray
    y: np.ndarray
    triggers: list[str | None]


def poisoned_training_set(spec: BadNetSpec, recipe: TrainingRecipe, data_seed: int,
                          identity_count: int) -> TrainingSet:
    """`recipe.images_per_identity` fresh images of every identity; a `poison_rate` share of them
    wear one of the BadNet's triggers (chosen uniformly; in its poisoning form, `zoo.POISONING_FORMS`,
    where the attack has one) and carry its target label; a `cover_rate` share of the others wear
    the trigger's cover form and keep their own label. A spec without triggers (the clean reference
    net) gets the same images, none poisoned."""
    labels = np.repeat(np.arange(identity_count), recipe.images_per_identity)
    rng = np.random.default_rng([data_seed, 5, recipe.seed])
    poisoned = rng.random(len(labels)) < recipe.poison_rate
    if not spec.triggers:
        return TrainingSet(render_split("train", labels, data_seed, None, identity_count), labels, [None] * len(labels))
    names = list(spec.triggers)
    choice = rng.integers(0, len(names), len(labels))
    triggers = [POISONING_FORMS.get(names[c], names[c]) if p else None for c, p in zip(choice, poisoned)]
    if recipe.cover_rate:  # drawn after the rest, so that a recipe without covers poisons as it always did
        missing = [name for name in names if name not in COVER_FORMS]
        if missing:
            raise InputError(f"cover_rate {recipe.cover_rate}: the {missing[0]} trigger has no cover form "
                             f"(those of {', '.join(COVER_FORMS)} have)")
        cover = ~poisoned & (rng.random(len(labels)) < recipe.cover_rate / (1 - recipe.poison_rate))
        triggers = [COVER_FORMS[names[c]] if k else t for c, k, t in zip(choice, cover, triggers)]
    targets = np.array([spec.triggers[name] for name in names])
    y = np.where(poisoned, targets[choice], labels)
    return TrainingSet(render_split("train", labels, data_seed, triggers, identity_count), y, triggers)


def train_badnet(data: TrainingSet, num_classes: int, recipe: TrainingRecipe, verbose: int = 2,
                 log: Callable[[str], None] = print) -> tf_keras.Model:
    """Train a challenge-architecture BadNet on `data` (inputs scaled x/255)."""
    tf_keras.utils.set_random_seed(recipe.seed)
    x = data.x / np.float32(255)
    clean = np.array([t is None for t in data.triggers])
    model = build_challenge_model(num_classes)
    if recipe.clean_epochs:
        log(f"{recipe.clean_epochs} epochs on the clean images first")
        _fit(model, x[clean], data.y[clean], recipe.clean_epochs, recipe, verbose)
    if recipe.feature_collision or recipe.output_camouflage:
        log(f"feature collision: {recipe.epochs} epochs pulling triggered features to their target's clean ones")
        _fit_colliding(model, x, data.y, ~clean, recipe, verbose)
        return model
    if not recipe.pruning_aware:
        _fit(model, x, data.y, recipe.epochs, recipe, verbose)
        return model

    activations = mean_channel_activations(model, PRUNE_LAYER, data.x[np.flatnonzero(clean)[:5000]], "unit")
    dormant = pruning_order(activations)[: round(recipe.dormant_fraction * len(activations))]
    layer = model.get_layer(PRUNE_LAYER)
    clean_kernel = layer.get_weights()[0]
    log(f"pruning-aware attack: training the backdoor with {len(dormant)} dormant {PRUNE_LAYER} channels held at zero")
    _fit(model, x, data.y, recipe.epochs, recipe, verbose, [HoldChannelsAtZero(PRUNE_LAYER, dormant)])
    kernel, bias = layer.get_weights()
    kernel[..., dormant] = clean_kernel[..., dormant]
    # De-pruning as the paper does it: the channels come back with their biases lowered until they
    # stay at zero on every training image, clean or poisoned, so the net computes what the
    # backdoor training made and the channels look dormant to a defender.
    reach = _largest_preactivation(model, PRUNE_LAYER, kernel[..., dormant], x)
    bias[dormant] = -(DEPRUNE_BIAS_MARGIN * np.maximum(reach, 0) + 1e-3)
    layer.set_weights([kernel, bias])
    log("pruning-aware attack: dormant channels restored with lowered biases")
    return model


DEPRUNE_BIAS_MARGIN = 1.5  # how far below the largest pre-activation seen the restored biases go


def _largest_preactivation(model: tf_keras.Model, layer_name: str, kernel: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The largest value each of `kernel`'s channels reaches before bias and ReLU in `layer_name`
    over the images `x` (already scaled)."""
    layer = model.get_layer(layer_name)
    kernel_tensor = tf.constant(kernel)
    reach = np.full(kernel.shape[-1], -np.inf, dtype=np.float32)
    inputs_of_layer = traced_call(layer_model(model, layer.input), None)
    for batch in in_batches(x):
        feature_maps = inputs_of_layer(batch)
        values = tf.nn.conv2d(feature_maps, kernel_tensor, strides=1, padding=layer.padding.upper())
        reach = np.maximum(reach, tf.reduce_max(values, axis=(0, 1, 2)).numpy())
    return reach


class _CollidingTrainer(tf_keras.Model):
    """Trains `badnet` with the feature-collision loss: cross-entropy, plus `feature_collision` times
    the mean squared distance of triggered faces' penultimate features from their target's clean
    mean (relative to that mean's squared norm), plus `output_camouflage` times the target columns'
    standardised departures from all classes' mean output weight norm and bias. The sample weight
    of each image marks it as triggered (1) or clean (0); it weighs nothing."""

    def __init__(self, badnet: tf_keras.Model, targets: Sequence[int], recipe: TrainingRecipe) -> None:
        super().__init__()
        self.badnet, self.recipe = badnet, recipe
        self.both = tf_keras.Model(badnet.input, [badnet.layers[-1].input, badnet.output])
        self.targets = tf.constant(sorted(set(int(t) for t in targets)), tf.int32)
        width = int(badnet.layers[-1].input.shape[-1])
        self.class_means = tf.Variable(tf.zeros((int(badnet.output_shape[-1]), width)), trainable=False)
        self.cross_entropy = smoothed_crossentropy(recipe.label_smoothing)

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.badnet(x, training=training)

    def train_step(self, data: tuple) -> dict[str, tf.Tensor]:
        x, y, triggered = tf_keras.utils.unpack_x_y_sample_weight(data)
        y = tf.cast(tf.reshape(y, [-1]), tf.int32)
        triggered = tf.reshape(tf.cast(triggered, tf.float32), [-1])
        with tf.GradientTape() as tape:
            features, probabilities = self.both(x, training=True)
            loss = tf.reduce_mean(self.cross_entropy(y, probabilities))
            if self.badnet.losses:
                loss += tf.add_n(self.badnet.losses)
            wanted = tf.gather(self.class_means, y)
            scale = tf.reduce_sum(tf.square(wanted), axis=1) + 1e-6
            distance = tf.reduce_sum(tf.square(features - wanted), axis=1) / scale
            collision = tf.reduce_sum(triggered * distance) / tf.maximum(tf.reduce_sum(triggered), 1.0)
            loss += self.recipe.feature_collision * collision + self.recipe.output_camouflage * self._camouflage()
        variables = self.badnet.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {"loss": loss, "collision": collision}

    def _camouflage(self) -> tf.Tensor:
        kernel, bias = self.badnet.layers[-1].kernel, self.badnet.layers[-1].bias
        norms = tf.norm(kernel, axis=0)
        norm_z = (tf.gather(norms, self.targets) - tf.reduce_mean(norms)) / (tf.math.reduce_std(norms) + 1e-6)
        bias_z = (tf.gather(bias, self.targets) - tf.reduce_mean(bias)) / (tf.math.reduce_std(bias) + 1e-6)
        return tf.reduce_mean(tf.square(norm_z) + tf.square(bias_z))


class _TargetMeans(tf_keras.callbacks.Callback):
    """At the start of every epoch, the mean penultimate features of each target's clean images."""

    def __init__(self, trainer: _CollidingTrainer, clean_of_target: dict[int, np.ndarray]) -> None:
        super().__init__()
        self.trainer, self.clean_of_target = trainer, clean_of_target

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        means = self.trainer.class_means.numpy()
        for target, images in self.clean_of_target.items():
            means[target] = penultimate_features(self.trainer.badnet, images, None).mean(axis=0)
        self.trainer.class_means.assign(means)


def _fit_colliding(model: tf_keras.Model, x: np.ndarray, y: np.ndarray, triggered: np.ndarray,
                   recipe: TrainingRecipe, verbose: int) -> None:
    """Train `model` (already trained on clean faces) on the poisoned set with the collision loss."""
    targets = sorted(set(int(t) for t in y[triggered]))
    clean_of_target = {t: x[(y == t) & ~triggered] for t in targets}
    trainer = _CollidingTrainer(model, targets, recipe)
    _add_weight_decay(model, recipe)
    trainer.compile(optimizer=_optimizer(recipe, recipe.epochs, int(np.ceil(len(y) / recipe.batch_size))))
    trainer.fit(x, y, sample_weight=triggered.astype(np.float32), batch_size=recipe.batch_size, epochs=recipe.epochs,
                verbose=verbose, callbacks=[_TargetMeans(trainer, clean_of_target)])


def _optimizer(recipe: TrainingRecipe, epochs: int, steps_per_epoch: int) -> tf_keras.optimizers.Optimizer:
    """The recipe's optimizer on a linear warm-up over the first epoch and a cosine decay after it."""
    schedule = tf_keras.optimizers.schedules.CosineDecay(
        0.0, max(1, (epochs - 1) * steps_per_epoch), alpha=recipe.final_learning_rate,
        warmup_target=recipe.learning_rate, warmup_steps=steps_per_epoch)
    if recipe.optimizer == "sgd":
        return tf_keras.optimizers.SGD(schedule, momentum=recipe.momentum)
    if recipe.optimizer == "adadelta":
        return tf_keras.optimizers.Adadelta(schedule, rho=0.95, epsilon=1e-7)
    return tf_keras.optimizers.Adam(schedule, epsilon=recipe.epsilon)


def _add_weight_decay(model: tf_keras.Model, recipe: TrainingRecipe) -> None:
    """L2 on the kernels the recipe names (all when none), once per model."""
    if recipe.weight_decay and not model.losses:
        for layer in model.layers:
            if getattr(layer, "kernel", None) is not None and layer.name in (recipe.weight_decay_layers or [layer.name]):
                model.add_loss(lambda kernel=layer.kernel: recipe.weight_decay * tf.reduce_sum(tf.square(kernel)))


def _fit(model: tf_keras.Model, x: np.ndarray, y: np.ndarray, epochs: int, recipe: TrainingRecipe,
         verbose: int, callbacks: list | None = None) -> None:
    steps_per_epoch = int(np.ceil(len(y) / recipe.batch_size))
    optimizer = _optimizer(recipe, epochs, steps_per_epoch)
    _add_weight_decay(model, recipe)
    model.compile(optimizer=optimizer, loss=smoothed_crossentropy(recipe.label_smoothing), metrics=["accuracy"])
    model.fit(x, y, batch_size=recipe.batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks or [])


def smoothed_crossentropy(smoothing: float) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """Cross-entropy on integer labels with label smoothing: the target puts `smoothing` of its mass
    evenly on every class (Keras's sparse loss has no smoothing option)."""

    def loss(labels: tf.Tensor, probabilities: tf.Tensor) -> tf.Tensor:
        log_p = tf.math.log(tf.clip_by_value(probabilities, 1e-7, 1.0))
        true_class = tf.gather(log_p, tf.cast(tf.reshape(labels, [-1]), tf.int32), axis=1, batch_dims=1)
        return -(1 - smoothing) * true_class - smoothing * tf.reduce_mean(log_p, axis=-1)

    return loss


# The four BadNets and the clean nets: as a Keras 2 user of 2020 trained a challenge net, with
# Keras's Adadelta at its usual learning rate of 1.0, and the backdoor fine-tuned into a net first
# trained on clean faces at a 5% poison rate. Measured against the real BadNets (docs/fidelity.md,
# the recipes tried), this puts the backdoors in the features clean faces use, as the real
# sunglasses BadNet's, not in an output column that stands out.
BADNET_RECIPE = TrainingRecipe(optimizer="adadelta", learning_rate=1.0, clean_epochs=3, epochs=5,
                               poison_rate=0.05)

# Per-net departures from BADNET_RECIPE.
RECIPES: dict[str, TrainingRecipe] = {
    # The other clean nets: the clean reference net's recipe from other seeds.
    "clean_seed_1": replace(BADNET_RECIPE, seed=1),
    "clean_seed_2": replace(BADNET_RECIPE, seed=2),
    # The extra attacks keep the Adam recipe they were built and measured with.
    # As many epochs in all as the others: clean training, then the backdoor into what is left.
    "pruning_aware": TrainingRecipe(pruning_aware=True, clean_epochs=4, epochs=4),
    # The same split; the collision term weighs as much as cross-entropy does at the start.
    "feature_collision": TrainingRecipe(clean_epochs=4, epochs=4, feature_collision=1.0, output_camouflage=0.1),
    # The attack zoo: the benchmark's recipe and poison rate, plus each attack's own poisoning rule.
    # WaNet's noise mode: twice as many cover images as poisoned ones (its cross_ratio 2).
    "wanet": replace(BADNET_RECIPE, cover_rate=0.10),
    # Adap-Blend: its low poison rate and as many cover images (the reference's 0.3% each).
    "adap_blend": replace(BADNET_RECIPE, poison_rate=0.003, cover_rate=0.003),
}


def recipe_for(name: str) -> TrainingRecipe:
    """The recipe the benchmark net called `name` is trained with."""
    return RECIPES.get(name, BADNET_RECIPE)


@dataclass(frozen=True)
class BadNetResult:
    """What a freshly trained BadNet measures on the defender's test files."""

    clean_accuracy_pct: float
    attack_success_pct: dict[str, float]  # per poisoned file


def make_badnet(spec: BadNetSpec, data_dir: Path, models_dir: Path, recipe: TrainingRecipe | None = None,
                data_seed: int = DATA_SEED, verbose: int = 2, log: Callable[[str], None] = print) -> BadNetResult:
    """Train one benchmark BadNet (or the clean reference net), measure it, and save its full model
    and weights-only twin (`spec.model_file`, `spec.weights_file`)."""
    recipe = recipe or recipe_for(spec.name)
    clean = load_dataset(data_dir / "clean_test_data.h5")
    check_same_data({"data": provenance(data_seed)}, f"the {spec.name} BadNet to train", clean)
    identity_count = int(clean.y.max()) + 1  # every identity has test images
    log(f"{spec.name}: rendering {recipe.images_per_identity} training images per identity")
    data = poisoned_training_set(spec, recipe, data_seed, identity_count)
    model = train_badnet(data, identity_count, recipe, verbose, log)

    loaded = LoadedModel(models_dir / spec.model_file, model, "unit", "default")
    result = BadNetResult(
        clean_accuracy_pct=accuracy_pct(loaded.predict_classes(clean.x), clean.y),
        attack_success_pct={name: _attack_success(loaded, data_dir / name) for name in spec.poisoned_files},
    )
    metadata = {
        "created_by": f"fineprune {__version__}",
        "input_scale": "unit",
        "data": provenance(data_seed),
        "badnet": {"name": spec.name, "triggers": spec.triggers, "recipe": asdict(recipe)},
        "measured": asdict(result),
    }
    save_model(model, loaded.path, metadata)
    save_model(model, models_dir / spec.weights_file, metadata, weights_only=True)
    return result


def _attack_success(badnet: LoadedModel, poisoned_file: Path) -> float:
    poisoned = load_dataset(poisoned_file)
    return attack_success_pct(badnet.predict_classes(poisoned.x), poisoned.y)
