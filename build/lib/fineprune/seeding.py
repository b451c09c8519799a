"""Repeatable runs without process-wide side effects: `seeded(seed)` seeds Python's, NumPy's and
TensorFlow's random numbers and makes TensorFlow's ops deterministic for one block, then puts all of
it back as it was, so that a repair leaves no trace on what the process trains next."""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import tensorflow as tf
import tf_keras
from tensorflow.python.eager import context
from tensorflow.python.framework import config as tf_config


def op_determinism_enabled() -> bool:
    """Whether TensorFlow's ops currently run deterministically."""
    return bool(tf_config.is_op_determinism_enabled())


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block seeded from `seed` with deterministic ops; the random states, TensorFlow's
    global seed and the determinism setting are restored afterwards."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    tf_seed, deterministic = context.global_seed(), op_determinism_enabled()
    tf_keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        tf.random.set_seed(tf_seed)
        if not deterministic:
            tf_config.disable_op_determinism()
