"""Backdoor detection from clean data alone: which classes look like a backdoor's target.

    margins  - MM-BD's maximum margin per class over the clean feature range, and its gamma test
    reversal - Neural Cleanse's trigger reversal, anomaly index and detection settings

The repair methods (`fineprune.defenses`) and `inspect_net.py` build on these; nothing here changes
a model.
"""
