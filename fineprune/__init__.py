"""fineprune: repair backdoored (BadNet) classifiers by Fine-Pruning and measure the repair.

Modules, one concept each:
    errors     - the one exception type for bad user input
    files      - writing outputs via a temporary file and a rename
    data       - challenge HDF5 data files and face images
    models     - the challenge architecture, loading, saving and input scaling
    pruning_curve - Fine-Pruning's pruning curve: accuracy and attack success channel by channel
    trigger_reversal - Neural Cleanse's trigger reversal and anomaly index
    detector   - the repaired detector G built from a BadNet and its repaired net
    metrics    - clean accuracy, attack success rate, share flagged
    evaluation - evaluating a repair on data files or images
    comparison - every repair method side by side, the bar, the oracle analysis
    report     - tables and JSON people can paste into a report
    plots      - figures
    cli        - plumbing shared by the command-line scripts

    defenses/  - the repair methods, one module each, their registry and shared fine-tuning core
    benchmark/ - the embedded synthetic benchmark (faces, triggers, data build, attacks, fidelity)
"""

__version__ = "0.1.0"
