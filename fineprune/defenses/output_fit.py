"""The output layer re-fitted on frozen penultimate features: softmax regression by full-batch Adam,
shared by the repairs that replace how a BadNet reads its features (`head`, `maxmargin`)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras

from fineprune.progress import Progress, silent

PROGRESS_EVERY = 100  # fitting steps between progress lines
WEIGHT_DECAY_HELP = "weight of the squared re-fitted output weights in the loss"


def fit_output_weights(features: np.ndarray, targets: np.ndarray, kernel: np.ndarray, bias: np.ndarray,
                       steps: int, learning_rate: float, weight_decay: float, columns: np.ndarray | None = None,
                       label: str = "fit", progress: Progress = silent) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression of `targets` (class labels, or one row of probabilities per image) on
    `features`, from `kernel` and `bias`: `steps` full-batch Adam steps on mean cross-entropy plus
    `weight_decay` times the squared fitted kernel. With `columns`, only those classes' weights
    are fitted and every other class keeps its logits; returns the whole kernel and bias. Every
    PROGRESS_EVERY steps `progress` gets a line starting with `label`."""
    x = tf.constant(features, tf.float32)
    trained = np.arange(kernel.shape[1]) if columns is None else np.asarray(columns)
    weights = [tf.Variable(kernel[:, trained], dtype=tf.float32), tf.Variable(bias[trained], dtype=tf.float32)]
    if columns is None:
        if targets.ndim == 1:
            cross_entropy = lambda z: tf.nn.sparse_softmax_cross_entropy_with_logits(targets, z)  # noqa: E731
        else:
            cross_entropy = lambda z: tf.nn.softmax_cross_entropy_with_logits(targets, z)  # noqa: E731
        loss_of_data = lambda: tf.reduce_mean(cross_entropy(tf.matmul(x, weights[0]) + weights[1]))  # noqa: E731
    else:
        loss_of_data = fixed_columns_cross_entropy(features, targets, kernel, bias, trained, x, weights)
    optimizer = tf_keras.optimizers.Adam(learning_rate)

    @tf.function
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_of_data() + weight_decay * tf.reduce_sum(tf.square(weights[0]))
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss

    for index in range(steps):
        loss = step()
        if (index + 1) % PROGRESS_EVERY == 0:
            progress(f"{label} step {index + 1}/{steps}, loss {float(loss):.3f}")
    fitted_kernel, fitted_bias = kernel.copy(), bias.copy()
    fitted_kernel[:, trained], fitted_bias[trained] = weights[0].numpy(), weights[1].numpy()
    return fitted_kernel, fitted_bias


def fixed_columns_cross_entropy(features: np.ndarray, targets: np.ndarray, kernel: np.ndarray, bias: np.ndarray,
                                trained: np.ndarray, x: tf.Tensor, weights: list[tf.Variable]):
    """The mean cross-entropy as a function of the `trained` columns' weights alone, every other
    class's logits fixed. Their part of the log-sum-exp and of the target's logit is computed once,
    so a step costs images x trained columns, not images x classes."""
    fixed = features @ kernel + bias
    kept = np.ones(kernel.shape[1], bool)
    kept[trained] = False
    log_sum_fixed = tf.constant(tf.reduce_logsumexp(fixed[:, kept], axis=1), tf.float32)
    if targets.ndim == 1:  # class labels
        target_fixed = tf.constant(np.where(kept[targets], fixed[np.arange(len(targets)), targets], 0.0), tf.float32)
        target_trained = tf.constant(targets[:, None] == trained[None, :], tf.float32)
    else:
        target_fixed = tf.constant((targets[:, kept] * fixed[:, kept]).sum(axis=1), tf.float32)
        target_trained = tf.constant(targets[:, trained], tf.float32)

    def loss() -> tf.Tensor:
        logits = tf.matmul(x, weights[0]) + weights[1]
        log_sum = tf.reduce_logsumexp(tf.stack([log_sum_fixed, tf.reduce_logsumexp(logits, axis=1)]), axis=0)
        return tf.reduce_mean(log_sum - target_fixed - tf.reduce_sum(target_trained * logits, axis=1))

    return loss
