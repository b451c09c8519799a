"""fineprune: repair backdoored (BadNet) classifiers with clean data, by the original
magnitude-pruning recipe, Fine-Pruning or the strongest clean-data defenses, and measure the repair.

Modules, one concept each, in layers: a module imports only from its own group or the groups listed
before it (tests/test_layers.py checks).
    errors     - the one exception type for bad user input
    files      - writing outputs via a temporary file and a rename
    settings   - typed method settings checked up front, and their command-line options
    cli        - plumbing shared by the command-line scripts
    data       - challenge HDF5 data files and face images, and where a data file came from
    models     - the challenge architecture, loading and saving, and the one prediction path
    metrics    - clean accuracy, attack success rate, share flagged
    jobs       - resumable long jobs
    seeding    - seeds and op determinism, set for one block and restored

    detection/ - which classes look like a backdoor's target (maximum margin, trigger reversal)
    defenses/  - the repair methods, one module each, their registry and shared fine-tuning core

    detector   - the repaired detector G built from a BadNet and its repaired net
    evaluation - evaluating a repair on data files or images
    pruning_curve - Fine-Pruning's pruning curve: accuracy and attack success channel by channel
    inspection - inspect_net.py's detection on one net, from clean data

    report     - tables and JSON people can paste into a report
    plots      - figures

    benchmark/ - the embedded synthetic benchmark (faces, triggers, data build, attacks, fidelity,
                 the comparison of methods, throughput)

    api        - the Python API, also at the top level: `fineprune.repair(...)` (loaded on first use)
    commands/  - the command-line programs (prune, eval, inspect_net, benchmark); `python -m fineprune`
"""

__version__ = "0.1.0"

# The Python API (`fineprune.api`) at the top level, imported on first use: `import fineprune` stays
# light (no TensorFlow) for the modules of the base layer that import it.
API = ("Evaluation", "InputError", "Inspection", "LabelledImages", "LoadedModel", "RepairedNet", "evaluate",
       "inspect", "load_dataset", "load_model", "repair")


def __getattr__(name: str) -> object:
    if name in API:
        from fineprune import cli

        cli.quiet_tensorflow()  # TensorFlow's start-up chatter is not the user's business
        from fineprune import api

        return getattr(api, name)
    raise AttributeError(f"module 'fineprune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])
