"""fineprune: repair backdoored (BadNet) classifiers by Fine-Pruning and measure the repair.

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
"""

__version__ = "0.1.0"
