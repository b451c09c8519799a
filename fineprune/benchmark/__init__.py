"""The embedded benchmark: synthetic faces and BadNets that stand in for the CSAW-HackML-2020 files.

Modules:
    faces     - procedurally generated faces in the challenge's image format
    triggers  - the backdoor triggers, drawn as the real challenge's triggers look
    build     - the data files in the challenge's layout, the BadNet list, provenance checks
    attacks   - how the BadNets are trained: BadNets poisoning and the pruning-aware attack
    fidelity  - how closely the synthetic BadNets behave like the real ones
    code_version - the version of the code a kept cell was computed by (its fingerprint's "code")
"""
