"""fineprune: repair backdoored (BadNet) classifiers by Fine-Pruning and measure the repair.

Modules, one concept each:
    errors     - the one exception type for bad user input
    data       - challenge HDF5 data files and face images
    models     - the challenge architecture, loading, saving and input scaling
    pruning    - the pruning defenses that produce a repaired net
    detector   - the repaired detector G built from a BadNet and its repaired net
    metrics    - clean accuracy, attack success rate, share flagged
    evaluation - evaluating a repair on data files or images
    report     - tables and JSON people can paste into a report
    plots      - figures
    cli        - plumbing shared by the command-line scripts
"""

__version__ = "0.1.0"
