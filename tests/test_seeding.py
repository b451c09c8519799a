"""Tests for fineprune.seeding: a seeded block repeats itself and leaves the process as it was."""

from __future__ import annotations

import random

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import config as tf_config  # the public API can only switch it on

from fineprune.seeding import op_determinism_enabled, seeded


def draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.random()), float(tf.random.uniform(()))


def test_a_seeded_block_repeats_its_draws() -> None:
    with seeded(3):
        first = draws()
    with seeded(3):
        assert draws() == first
    with seeded(4):
        assert draws() != first


def test_a_seeded_block_puts_the_random_state_and_the_determinism_setting_back() -> None:
    was_deterministic = op_determinism_enabled()
    tf_config.disable_op_determinism()
    try:
        random.seed(11)
        np.random.seed(11)
        expected = (random.random(), float(np.random.random()))
        random.seed(11)
        np.random.seed(11)
        with seeded(0):
            assert op_determinism_enabled()
            draws()
        assert (random.random(), float(np.random.random())) == expected
        assert not op_determinism_enabled()
    finally:
        if was_deterministic:
            tf.config.experimental.enable_op_determinism()
