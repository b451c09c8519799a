"""The command-line programs, thin argument parsers over the package: `prune`, `eval`,
`inspect_net` and `benchmark`. Each has `main(argv) -> exit status`; the top-level scripts
(`python prune.py ...`), `python -m fineprune COMMAND ...` and the installed console scripts all
call it."""
