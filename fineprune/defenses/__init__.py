"""Repair methods: turn a BadNet into a repaired net using clean data only.

    core          - what every method shares: settings, the seeded held-out split, fine-tuning,
                    the record of a repair (RepairResult)
    caps          - upper bounds on activations, as standard layers inserted after named layers
    channels      - convolutional channels: mean activation on clean data, pruning order, removal
    strength      - the strength rule: each method's strength chosen on held-out clean accuracy alone
    registry      - the methods by name, as `prune.py --method` and the comparison list them
    magnitude     - the original project's recipe (TF-MOT magnitude pruning of Dense layers)
    fine_pruning  - Fine-Pruning (`activation`) and its halves (`prune`, `finetune`)
    head          - re-fit the output layer on frozen clean features (linear probe or shrunk LDA)
    maxmargin     - MM-BD: flag classes with an abnormal maximum margin (feature range, input space), cap
                    features, re-fit those classes
    bounds        - MM-BD's mitigation: per-channel upper bounds on inner layers, learned on clean faces
    unlearn       - Neural Cleanse: reverse-engineer triggers, flag anomalies, unlearn them
    fst           - Feature Shift Tuning: a new output layer pushed away from the old
    ftsam         - FT-SAM: fine-tuning with (adaptive) sharpness-aware minimisation
    anp           - Adversarial Neuron Pruning: prune the neurons a small perturbation turns bad
    ibau          - I-BAU: unlearn universal perturbations with the implicit hypergradient
    sau           - SAU: unlearn the adversarial examples the net shares with the BadNet

Every other module of this package is a method: it is imported here, which registers it, so
adding a method touches one new file.
"""

import importlib
import pkgutil

from fineprune.defenses.core import FineTuningSettings, RepairResult, RepairSettings, repair_record
from fineprune.defenses.registry import DEFENSES, Defense, get, names, option_fields, repair, settings_for

SHARED_MODULES = ("core", "caps", "channels", "registry", "strength")

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in SHARED_MODULES:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DEFENSES", "Defense", "FineTuningSettings", "RepairResult", "RepairSettings", "get", "names",
           "option_fields", "repair", "repair_record", "settings_for"]
