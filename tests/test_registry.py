"""Tests for fineprune.defenses.registry: every method is listed, settings are built per method and
checked, and `repair` runs the method the settings name."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from conftest import TinyBenchmark
from fineprune import defenses
from fineprune.data import load_dataset
from fineprune.errors import InputError
from fineprune.models import load_model


def test_every_method_is_registered_in_order() -> None:
    assert defenses.names() == ["magnitude", "finetune", "prune", "activation", "head", "maxmargin", "bounds", "unlearn", "fst", "ftsam", "anp", "ibau", "sau"]
    for name in defenses.names():
        method = defenses.get(name)
        assert method.name == name and method.summary and callable(method.run)


def test_settings_carry_their_method_and_round_trip() -> None:
    for name in defenses.names():
        settings = defenses.settings_for(name, seed=3)
        assert settings.method == name and settings.seed == 3
        assert type(settings)(**asdict(settings)) == settings


@pytest.mark.parametrize("call, message", [
    (lambda: defenses.get("voodoo"), "--method voodoo is not one of magnitude, finetune, prune, activation, head, maxmargin, bounds, unlearn, fst, ftsam, anp, ibau, sau"),
    (lambda: defenses.settings_for("magnitude", layer="conv_4"), "--layer does not apply to --method magnitude (its options: --validation-split, --epochs, --batch-size, "
     "--learning-rate, --initial-sparsity, --final-sparsity, --pruning-frequency)"),
    (lambda: defenses.settings_for("head", epochs=3), "--epochs does not apply to --method head (its options: --validation-split, --fit, --weight-decay, "
     "--probe-steps, --probe-learning-rate, --distillation, --shrinkage)"),
    (lambda: defenses.settings_for("activation", accuracy_budget=-2.0), "--accuracy-budget -2 must be at least 0"),
])
def test_unknown_methods_and_foreign_settings_are_refused(call, message: str) -> None:
    with pytest.raises(InputError) as error:
        call()
    assert str(error.value) == message


def test_option_fields_name_the_methods_that_take_them() -> None:
    options = defenses.option_fields()
    assert [method for method, _ in options["validation_split"]] == defenses.names()
    assert [method for method, _ in options["layer"]] == ["prune", "activation"]
    assert [method for method, _ in options["epochs"]] == ["magnitude", "finetune", "activation", "unlearn", "fst",
                                                           "ftsam", "sau"]
    # every method that tunes its own strength takes the budget; the original recipe and the
    # output-layer methods do not
    assert [method for method, _ in options["accuracy_budget"]] == ["finetune", "prune", "activation", "unlearn",
                                                                    "fst", "ftsam", "anp", "ibau", "sau"]
    assert [method for method, _ in options["final_sparsity"]] == ["magnitude"]
    assert "seed" not in options and "channels" not in options and "method" not in options


def test_repair_runs_the_method_the_settings_name(tiny: TinyBenchmark) -> None:
    badnet, clean = load_model(tiny.badnet), load_dataset(tiny.clean_validation)
    result = defenses.repair(badnet, clean, defenses.settings_for("prune", prune_fraction=0.25, seed=1))
    assert result.removed == "15/60 conv_3 channels" and result.fine_tuning_steps == 0


def test_a_method_cannot_be_registered_twice() -> None:
    method = defenses.get("head")
    with pytest.raises(ValueError, match="'head' is registered twice"):
        defenses.registry.register("head", method.summary, method.settings_type, method.order)(method.run)
