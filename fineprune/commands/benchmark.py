"""The embedded synthetic benchmark: build its data, train its BadNets, run the whole reproduction.

    python benchmark.py data        # make data: the CSAW-format synthetic face files in data/
    python benchmark.py badnets     # make badnets: train the four BadNets and the clean net into models/ (committed);
                                    # --only NAME for one net, --only zoo (make zoo) for the attack zoo's six
    python benchmark.py patterns    # make patterns: the attack zoo's optimised triggers (TrojanNN, low-frequency), from
                                    # the clean net
    python benchmark.py detection   # make detection: inspect_net.py's margin tests judged by the real BadNets' targets
    python benchmark.py gallery     # make gallery: sample faces with each trigger (docs/)
    python benchmark.py fidelity    # make fidelity: the synthetic BadNets beside the real ones, statistic by statistic
    python benchmark.py sweep       # make sweep: the pruning curve of a BadNet beside the real lab3 BadNet's
    python benchmark.py demo        # make demo: prune.py and eval.py on every BadNet, seed 0 (--seeds 0 1 2: the
                                    # README's whole table), checked against the README; results/results.md
    python benchmark.py compare     # make compare: every repair method on every BadNet and seed, with figures
    python benchmark.py tradeoff    # make tradeoff: each method's attack success against clean accuracy at every
                                    # strength its rule measures, on the hardest nets; results/tradeoff.md, .json
    python benchmark.py oracle      # (make compare runs it last) where each backdoor lives, and whether fine-tuning
                                    # brings it back
    python benchmark.py speed       # make speed: images per second of one net and of G
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from fineprune import cli
from fineprune.benchmark import build


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="benchmark.py",
        description="The embedded synthetic face benchmark in the CSAW-HackML-2020 file layout.",
    )
    cli.add_version_option(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data = commands.add_parser("data", help="build the data files (deterministic from the seed)")
    add_folders(data, "data")
    data.add_argument("--seed", type=cli.seed_number, default=None, metavar="N", help="data seed (default: the benchmark's)")
    data.add_argument("--identities", type=int, default=None, metavar="N",
                      help="build a miniature with fewer identities, for trying things out (default: 1283)")
    badnets = commands.add_parser("badnets", help="train the benchmark's BadNets, and the clean reference net, "
                                  "on the attacker's own images")
    add_folders(badnets, "data", "models")
    badnets.add_argument("--only", action="append", metavar="NAME",
                         help="train only this net (repeatable): sunglasses, multi_trigger_multi_target, "
                         "anonymous_1, anonymous_2, clean (the unpoisoned reference net, models/clean_net.h5), "
                         "clean_seed_1, clean_seed_2 (two more alike, other seeds), "
                         "the extra BadNets: pruning_aware (the pruning-aware attack), feature_collision (the adaptive attack), "
                         "and the attack zoo: " + ", ".join(spec.name for spec in build.ZOO_BADNETS) + "; "
                         "'zoo' for all of the attack zoo")
    badnets.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="change one field of each net's training recipe (repeatable), e.g. poison_rate=0.02, "
                         "optimizer=sgd, clean_epochs=5; see TrainingRecipe in fineprune/benchmark/attacks.py")
    patterns = commands.add_parser("patterns", help="optimise the attack zoo's two optimised triggers (TrojanNN's "
                                   "patch, the low-frequency perturbation) on the clean net, into the package")
    patterns.add_argument("--models-dir", default="models", metavar="DIR",
                          help="where clean_net.h5 is (default: %(default)s)")
    fidelity = commands.add_parser("fidelity", help="how closely the synthetic BadNets behave like the real "
                                   "challenge BadNets: results/fidelity.md and .json")
    add_folders(fidelity, "data", "models", "results")
    fidelity.add_argument("--csaw-dir", default="../shared/csaw", metavar="DIR",
                          help="the real challenge files: weights/, samples/, seed_repaired/ (default: %(default)s)")
    add_seeds_and_jobs(fidelity, "the original recipe's seeds (each repair is kept in RESULTS/fidelity/: a run resumes)")
    fidelity.add_argument("--no-recipe", action="store_true",
                          help="skip the original recipe's repairs (the slow part): signatures and locations only")
    add_badnet_choice(fidelity)
    detection = commands.add_parser("detection", help="inspect_net.py's margin tests judged by the real challenge "
                                    "BadNets' targets, with the clean nets' false alarms: results/detection.md "
                                    "and .json")
    add_folders(detection, "data", "models", "results")
    detection.add_argument("--csaw-dir", default="../shared/csaw", metavar="DIR",
                           help="the real challenge files: weights/, samples/ (default: %(default)s)")
    add_jobs(detection)
    sweep = commands.add_parser("sweep", help="prune conv_3 channels by mean activation and measure the curve")
    sweep.add_argument("--badnet", default="sunglasses", metavar="NAME", help="which BadNet (default: %(default)s)")
    add_folders(sweep, "data", "models", "results")
    gallery = commands.add_parser("gallery", help="draw sample faces of the benchmark, clean and with each trigger")
    gallery.add_argument("output", nargs="?", default="docs/benchmark_faces.png", help="PNG to write (default: %(default)s)")
    gallery.add_argument("--zoo-output", default="docs/attack_zoo_faces.png", metavar="PNG",
                         help="the attack zoo's triggers, and how much each changes a face (default: %(default)s)")
    demo = commands.add_parser(
        "demo", help="prune.py and eval.py for every BadNet, seed 0 by default (the quick check; --seeds 0 1 2: "
        "the README's whole table), checked against the README's table; writes only under RESULTS_DIR",
        description="prune.py and eval.py for every BadNet, seed 0 by default (the quick check; --seeds 0 1 2 for "
        "the README's whole table), each number checked against the README's range over its seeds. Writes only "
        "under RESULTS_DIR (the repaired nets in RESULTS_DIR/demo/), never in MODELS_DIR. Exits 0 once the run "
        "completes, listing any number outside the README's range and by how much it misses.")
    add_folders(demo, "data", "models", "results")
    add_seeds_and_jobs(demo, "prune.py's seeds: 0 the quick check, 0 1 2 the README's table", default=[0])
    demo.add_argument("--readme", default="README.md", metavar="FILE",
                      help="the README whose demo table the run is checked against (default: %(default)s)")
    compare = commands.add_parser("compare", help="every repair method on every BadNet: results/comparison.md, "
                                  ".json and .csv, pruning curves, channel activations, galleries of G's mistakes")
    add_folders(compare, "data", "models", "results")
    compare.add_argument("--figures-dir", metavar="DIR", help="where to draw the figures (default: --results-dir)")
    compare.add_argument("--badnet", action="append", metavar="NAME",
                         help="this net only (repeatable; default: every net: the four BadNets, the extras "
                         "pruning_aware and feature_collision, the attack zoo (" +
                         ", ".join(spec.name for spec in build.ZOO_BADNETS) + "), and the clean nets clean, "
                         "clean_seed_1 and clean_seed_2, which show what a repair costs where there is nothing "
                         "to remove)")
    compare.add_argument("--method", action="append", metavar="NAME",
                         help="run this repair method only (repeatable; default: every method of prune.py, "
                         "and the variants 'activation conv_4', 'head lda' and 'maxmargin bounds')")
    add_seeds_and_jobs(compare, "every repair's seeds")
    compare.add_argument("--fresh", action="store_true",
                         help="redo every cell, even those kept from an earlier run in RESULTS_DIR/compare/")
    compare.add_argument("--no-curves", action="store_true",
                         help="skip the pruning curves and channel activations (and their figures): the methods only")
    tradeoff = commands.add_parser("tradeoff", help="what each method trades as its strength varies, on the hardest "
                                   "nets: results/tradeoff.md and .json, docs' figure tradeoff.png")
    add_folders(tradeoff, "data", "models", "results")
    tradeoff.add_argument("--figures-dir", metavar="DIR", help="where to draw the figure (default: --results-dir)")
    tradeoff.add_argument("--badnet", action="append", metavar="NAME",
                          help="this net only (repeatable; default: " + ", ".join(build.TRADEOFF_NETS) + ")")
    tradeoff.add_argument("--method", action="append", metavar="NAME",
                          help="this repair method only (repeatable; default: every method of prune.py)")
    add_jobs(tradeoff)
    tradeoff.add_argument("--fresh", action="store_true",
                          help="redo every cell, even those kept from an earlier run in RESULTS_DIR/tradeoff/")
    oracle = commands.add_parser("oracle", help="an analysis, not a defense: prune the conv_3 channels each trigger "
                                 "raises most, then fine-tune; results/oracle.md and .json")
    add_folders(oracle, "data", "models", "results")
    add_badnet_choice(oracle)
    oracle.add_argument("--channels", type=int, default=10, metavar="K",
                        help="how many of the most raised channels to prune (default: %(default)s)")
    cli.add_seed_option(oracle)
    speed = commands.add_parser("speed", help="images per second of a BadNet alone and of G (both nets), "
                                "on the same clean test images")
    speed.add_argument("--badnet", default="sunglasses", metavar="NAME", help="which BadNet (default: %(default)s)")
    speed.add_argument("--images", type=int, default=4096, metavar="N",
                       help="how many clean test images to time on (default: %(default)s)")
    speed.add_argument("--repeats", type=int, default=3, metavar="K",
                       help="timed passes; the fastest counts (default: %(default)s)")
    add_folders(speed, "data", "models", "results")
    return parser


def add_folders(parser: argparse.ArgumentParser, *folders: str) -> None:
    """--data-dir, --models-dir, --results-dir options, each defaulting to the folder of that name."""
    for folder in folders:
        parser.add_argument(f"--{folder}-dir", default=folder, metavar="DIR", help=f"{folder} folder (default: %(default)s)")


def add_seeds_and_jobs(parser: argparse.ArgumentParser, seeds_help: str, default: list[int] | None = None) -> None:
    """--seeds N [N ...] (by default 0, 1, 2), --jobs N and --scheduler ADDRESS: a command that runs
    each repair once per seed, in cells on a Dask cluster (`fineprune.jobs`)."""
    parser.add_argument("--seeds", type=cli.seed_number, nargs="+", default=default or [0, 1, 2], metavar="N",
                        help=f"{seeds_help} (default: %(default)s)")
    add_jobs(parser)


def add_jobs(parser: argparse.ArgumentParser) -> None:
    """--jobs N and --scheduler ADDRESS: where a command's cells run (`fineprune.jobs`)."""
    from fineprune.jobs import default_workers

    parser.add_argument("--jobs", type=int, default=default_workers(), metavar="N",
                        help="cells run side by side on a local Dask cluster of N worker processes, each with its "
                        "share of the cores and of the memory (default: one per two cores, here %(default)s)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run the cells on the running Dask cluster whose scheduler is at ADDRESS (e.g. "
                        "tcp://10.0.0.5:8786) instead of a local one; every worker needs the package and the data "
                        "and models at the same paths (docs/comparison.md)")


def check_seeds_and_jobs(args: argparse.Namespace) -> None:
    from fineprune.errors import InputError

    if len(set(args.seeds)) != len(args.seeds):
        raise InputError(f"--seeds {' '.join(map(str, args.seeds))}: a seed is given twice")
    check_jobs(args)


def check_jobs(args: argparse.Namespace) -> None:
    from fineprune.errors import InputError

    if args.jobs < 1:
        raise InputError(f"--jobs {args.jobs} must be at least 1")


def add_badnet_choice(parser: argparse.ArgumentParser) -> None:
    """--badnet NAME, repeatable: which BadNets a command runs on."""
    parser.add_argument("--badnet", action="append", metavar="NAME",
                        help="this BadNet only (repeatable; default: all four; the extras, pruning_aware and "
                        "feature_collision, by name only)")


def say(message: str) -> None:
    """Progress on stderr, named after the script."""
    cli.stderr_line(f"benchmark.py: {message}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run("benchmark.py", lambda: COMMANDS[args.command](args))


def build_data(args: argparse.Namespace) -> int:
    from fineprune.errors import InputError

    started = time.perf_counter()
    seed = build.DATA_SEED if args.seed is None else args.seed
    identities = build.NUM_IDENTITIES if args.identities is None else args.identities
    if not 9 <= identities <= build.NUM_IDENTITIES:  # the multi-trigger targets go up to class 8
        raise InputError(f"--identities {identities} is outside [9, {build.NUM_IDENTITIES}]")
    build.build_data(args.data_dir, seed, identities, progress=say)
    print(f"Built the benchmark data in {args.data_dir}/ (seed {seed}) in {time.perf_counter() - started:.1f} s")
    return 0


def train_badnets(args: argparse.Namespace) -> int:
    cli.quiet_tensorflow()
    from fineprune import report
    from fineprune.benchmark import attacks
    from fineprune.evaluation import poisoned_name

    every = [*build.BADNETS, build.CLEAN_NET]  # the extra BadNets, the zoo and the other clean nets by name only
    named = [*build.BADNETS, *build.CLEAN_NETS, *build.EXTRA_BADNETS, *build.ZOO_BADNETS]
    zoo = [spec.name for spec in build.ZOO_BADNETS]
    wanted = [each for name in args.only or [] for each in (zoo if name == "zoo" else [name])]
    specs = [build.find_net(name, "--only", named) for name in wanted] if wanted else every
    rows = []
    for spec in specs:
        started = time.perf_counter()
        recipe = attacks.recipe_with(attacks.recipe_for(spec.name), args.set)
        result = attacks.make_badnet(spec, Path(args.data_dir), Path(args.models_dir), recipe,
                                     log=say)
        seconds = f"{time.perf_counter() - started:.0f}"
        for file, asr in result.attack_success_pct.items():
            rows.append([spec.name, poisoned_name(file), result.clean_accuracy_pct, asr, seconds])
        if not spec.triggers:
            rows.append([spec.name, "-", result.clean_accuracy_pct, "-", seconds])
    print(report.markdown_table(["BadNet", "trigger", "clean accuracy (%)", "attack success (%)", "seconds"], rows))
    return 0


def make_patterns(args: argparse.Namespace) -> int:
    cli.quiet_tensorflow()
    from fineprune.benchmark import zoo_patterns
    from fineprune.models import load_model

    started = time.perf_counter()
    clean = load_model(Path(args.models_dir) / build.CLEAN_NET.model_file)
    written = zoo_patterns.make_patterns(clean, log=say)
    print(f"Wrote {', '.join(map(str, written))} in {time.perf_counter() - started:.0f} s. The committed trojannn "
          "and low_frequency BadNets were trained on the committed patterns: rebuild the data (make data) "
          "and retrain them (benchmark.py badnets --only trojannn --only low_frequency) to use these")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    cli.quiet_tensorflow()
    from fineprune import report
    from fineprune.data import check_same_data, load_dataset
    from fineprune.evaluation import poisoned_name
    from fineprune.models import load_model
    from fineprune.pruning_curve import accuracy_drop_points, pruning_sweep

    spec = build.find_net(args.badnet, "--badnet")
    data = Path(args.data_dir)
    badnet = load_model(Path(args.models_dir) / spec.model_file)
    clean = load_dataset(data / "clean_validation_data.h5")
    check_same_data(badnet.metadata, badnet.path, clean)
    poisoned = {poisoned_name(f): load_dataset(data / f) for f in spec.poisoned_files}
    say(f"pruning {badnet.path}'s conv_3 channels one by one ({len(clean)} clean images)")
    started = time.perf_counter()
    points = pruning_sweep(badnet, "conv_3", clean, poisoned)
    table = report.sweep_comparison(accuracy_drop_points(points, [2, 4, 10, 30]), next(iter(poisoned)))
    print(table)
    results = Path(args.results_dir)
    report.write_json(results / f"sweep_{spec.name}.json", [vars(p) for p in points])
    report.write_text(results / f"sweep_{spec.name}.md", table + "\n")
    print(f"\n{len(points)} points in {time.perf_counter() - started:.0f} s; all of them in {results}/sweep_{spec.name}.json")
    return 0


def run_fidelity(args: argparse.Namespace) -> int:
    from fineprune.errors import InputError

    data, models, results, csaw = (Path(args.data_dir), Path(args.models_dir), Path(args.results_dir),
                                   Path(args.csaw_dir))
    check_seeds_and_jobs(args)
    specs = [build.find_net(name, "--badnet") for name in args.badnet] if args.badnet else build.BADNETS
    if not (csaw / "weights").is_dir():
        raise InputError(f"{csaw}: no weights/ folder of real challenge BadNets here (see --csaw-dir)")
    started = time.perf_counter()
    build.ensure_data(data, say)
    cli.quiet_tensorflow()
    from fineprune import report
    from fineprune.benchmark import fidelity
    from fineprune.models import load_model

    badnets = {spec.name: (load_model(models / spec.model_file), spec.poisoned_files) for spec in specs}
    found = fidelity.measure_fidelity(csaw, data, badnets, None if args.no_recipe else results / "fidelity",
                                      args.seeds, args.jobs, say, args.scheduler)
    text = found.markdown()
    print(text)
    report.write_text(results / "fidelity.md", text)
    report.write_json(results / "fidelity.json", found.to_json())
    print(f"Wrote {results}/fidelity.md and fidelity.json in {time.perf_counter() - started:.0f} s")
    return 0


def run_detection(args: argparse.Namespace) -> int:
    from fineprune.errors import InputError

    check_jobs(args)
    data, models, results, csaw = (Path(args.data_dir), Path(args.models_dir), Path(args.results_dir),
                                   Path(args.csaw_dir))
    if not (csaw / "weights").is_dir():
        raise InputError(f"{csaw}: no weights/ folder of real challenge BadNets here (see --csaw-dir)")
    started = time.perf_counter()
    build.ensure_data(data, say)
    cli.quiet_tensorflow()
    from fineprune import report
    from fineprune.benchmark import detection_check, fidelity
    from fineprune.data import load_dataset

    samples = fidelity.load_real_samples(csaw)
    nets = []
    for badnet, (targets, input_scale) in detection_check.REAL_TARGETS.items():
        nets.append(detection_check.NetToJudge(badnet, "real", fidelity.real_badnet_file(csaw, badnet), input_scale,
                                               targets, samples.clean))
    faces = fidelity.five_clean_faces(load_dataset(data / "clean_test_data.h5"))
    for spec in (*build.BADNETS, *build.EXTRA_BADNETS, *build.ZOO_BADNETS, *build.CLEAN_NETS):
        nets.append(detection_check.NetToJudge(spec.name, "synthetic" if spec.triggers else "clean",
                                               models / spec.model_file, None,
                                               tuple(sorted(set(spec.triggers.values()))), faces))
    judged = detection_check.check_detection(nets, results / "detection", say=say, workers=args.jobs,
                                             scheduler=args.scheduler)
    text = (detection_check.detection_table(judged) + "\n\n" + detection_check.detection_summary(judged) + "\n")
    print(text)
    report.write_text(results / "detection.md", text)
    report.write_json(results / "detection.json", detection_check.to_json(judged))
    print(f"Wrote {results}/detection.md and detection.json in {time.perf_counter() - started:.0f} s")
    return 0


def draw_gallery(args: argparse.Namespace) -> int:
    import numpy as np

    from fineprune import plots
    from fineprune.benchmark.triggers import TRIGGERS

    people = [0, 1, 2, 3, 4, 5]
    # The anonymous triggers stay unseen: a defender is told nothing about them.
    triggers: list[str | None] = [None, None, None, *(t for t in TRIGGERS if not t.startswith("anonymous"))]
    labels = np.repeat(people, len(triggers))
    images = build.render_split("test", labels, triggers=triggers * len(people), workers=1)
    captions = [f"{label}: {trigger or 'clean'}" for label, trigger in zip(labels, triggers * len(people))]
    plots.draw_gallery(images, captions, args.output, columns=len(triggers),
                       title="The embedded benchmark: one identity per row;\nclean frames, then each published trigger")
    print(f"wrote {args.output}")
    draw_zoo_gallery(args.zoo_output, people[:3])
    print(f"wrote {args.zoo_output}")
    return 0


def draw_zoo_gallery(output: str, people: list[int]) -> None:
    """The attack zoo's triggers on a few faces (each as the defender's test file has it, then the
    forms worn when poisoning and by cover images), and under them how far each moves the first
    face's pixels."""
    import numpy as np

    from fineprune import plots
    from fineprune.benchmark.zoo import COVER_FORMS, POISONING_FORMS

    forms = dict.fromkeys([*POISONING_FORMS.values(), *COVER_FORMS.values()])
    triggers: list[str | None] = [None, *(p.trigger for p in build.ZOO_POISONED_SETS), *forms]
    # Each trigger drawn on the same frames (a split draws the n-th pose for the n-th image), as `make data` does.
    drawn = np.stack([build.render_split("poisoned", np.array(people), triggers=[t] * len(people), workers=1)
                      for t in triggers], axis=1)  # (people, triggers, H, W, 3)
    images = list(drawn.reshape(-1, *drawn.shape[2:]))
    captions = [f"{person}: {trigger or 'clean'}" for person in people for trigger in triggers]
    first = images[: len(triggers)]
    change = np.abs(first - first[0]).max(axis=-1)
    shown = [None, *(np.repeat(np.clip(c * 4, 0, 255)[..., None], 3, axis=-1) for c in change[1:])]
    notes = ["largest change of any\nchannel, x4 (white: 64+)",
             *(f"{c.max():.0f} at most,\n{c.mean():.1f} on average" for c in change[1:])]
    plots.draw_gallery([*images, *shown], [*captions, *notes], output, columns=len(triggers),
                       title="The attack zoo: one identity per row, clean, each trigger, then the forms worn when "
                       "poisoning and by covers;\nthe last row: how far each moves the first face's pixels")


def run_demo(args: argparse.Namespace) -> int:

    check_seeds_and_jobs(args)
    data, models, results = Path(args.data_dir), Path(args.models_dir), Path(args.results_dir)
    started = time.perf_counter()
    build.ensure_data(data, say)
    cli.quiet_tensorflow()
    from fineprune import report
    from fineprune.jobs import Job, run_jobs

    jobs = [Job(f"{spec.name}/seed_{seed}", demo_cell, (spec.name, seed, str(data), str(models), str(results / "demo")))
            for spec in build.BADNETS for seed in args.seeds]
    say(f"{len(jobs)} jobs: prune.py and eval.py on {len(build.BADNETS)} BadNets x "
                    f"{len(args.seeds)} seeds; {args.jobs} at a time")
    done = run_jobs(jobs, results / "demo", args.jobs, fresh=True, progress=say, scheduler=args.scheduler)
    evaluations = {spec.name: [done[f"{spec.name}/seed_{seed}"] for seed in args.seeds] for spec in build.BADNETS}
    table = report.demo_table(evaluations)
    heading = "All values in percent; \"repaired\" is the detector G. " + (
        f"One run, prune.py's seed {args.seeds[0]}." if len(args.seeds) == 1 else
        report.over_seeds(args.seeds, "prune.py's "))
    report.write_json(results / "results.json", {"seeds": args.seeds, "evaluations": evaluations})
    report.write_text(results / "results.md", f"{heading}\n\n{table}\n")
    print(f"{heading}\n\n{table}")
    readme = Path(args.readme)
    reported = report.read_demo_table(readme.read_text()) if readme.is_file() else {}
    if reported:
        print(f"\n{demo_check_heading(args.seeds, readme)}")
        print("\n".join(report.demo_check(report.demo_spreads(evaluations), reported)))
    else:
        print(f"\n{readme} holds no demo table to check this run against")
    print(f"\nWrote {results}/results.md and results.json, the repaired nets in {results}/demo/, in "
          f"{time.perf_counter() - started:.0f} s")
    return 0


def demo_check_heading(seeds: list[int], readme: Path) -> str:
    """The line above the demo's check: what of this run is set against the README's table."""
    ours = (f"This run (seed {seeds[0]})" if len(seeds) == 1 else
            f"This run's median over seeds {', '.join(map(str, seeds))}")
    return f"{ours} against the range of the demo table in {readme}, number by number:"


def demo_cell(badnet_name: str, seed: int, data_dir: str, models_dir: str, work_dir: str) -> dict[str, Any]:
    """prune.py then eval.py on one BadNet with one seed; returns eval.py's JSON. The repaired net
    and eval.py's JSON go under `work_dir`/BADNET/; nothing is written beside the BadNet."""
    from fineprune.commands import eval as eval_script
    from fineprune.commands import prune as prune_script
    from fineprune.errors import InputError

    spec = build.find_net(badnet_name, "--badnet", build.BADNETS)
    data, badnet = Path(data_dir), Path(models_dir) / spec.model_file
    repaired = Path(work_dir) / spec.name / f"{badnet.stem}_rp_seed_{seed}.h5"
    repaired.parent.mkdir(parents=True, exist_ok=True)
    say(f"[{spec.name}, seed {seed}] prune.py {badnet} --seed {seed}")
    if prune_script.main([str(badnet), "--clean-data", str(data / "clean_validation_data.h5"), "--seed", str(seed),
                          "--output", str(repaired), "--quiet"]) != 0:
        raise InputError(f"{badnet}: prune.py failed (see above)")
    poisoned = [str(data / f) for f in spec.poisoned_files]
    out = Path(work_dir) / spec.name / f"eval_seed_{seed}.json"
    say(f"[{spec.name}, seed {seed}] eval.py {' '.join(poisoned)} {badnet}")
    if eval_script.main([*poisoned, str(badnet), "--repaired", str(repaired), "--clean-data",
                         str(data / "clean_test_data.h5"), "--json", str(out)]) != 0:
        raise InputError(f"{badnet}: eval.py failed (see above)")
    return json.loads(out.read_text())


def run_comparison(args: argparse.Namespace) -> int:
    from fineprune.errors import InputError

    check_seeds_and_jobs(args)
    data, models, results = Path(args.data_dir), Path(args.models_dir), Path(args.results_dir)
    figures = Path(args.figures_dir) if args.figures_dir else results
    # A clean net measures what a repair costs.
    nets = (*build.BADNETS, *build.EXTRA_BADNETS, *build.ZOO_BADNETS, *build.CLEAN_NETS)
    specs = [build.find_net(name, "--badnet", nets) for name in args.badnet] if args.badnet else list(nets)
    started = time.perf_counter()
    cli.quiet_tensorflow()
    from fineprune import report
    from fineprune.benchmark import comparison

    methods = comparison.standard_methods()
    if args.method:
        labels = [method.label for method in methods]
        unknown = [name for name in args.method if name not in labels]
        if unknown:
            raise InputError(f"--method {unknown[0]} is not one of {', '.join(labels)}")
        methods = [method for method in methods if method.label in args.method]
    build.ensure_data(data, say)
    try:
        outcome = comparison.compare_benchmark(
            data, models, specs, methods, figures, results / "compare", seeds=args.seeds, workers=args.jobs,
            fresh=args.fresh, progress=say, curves=not args.no_curves, scheduler=args.scheduler,
        )
    except KeyboardInterrupt:
        say(f"interrupted; every cell finished so far is kept in {results}/compare/: "
                        "the same command resumes from there")
        return 130
    table = report.comparison_table(outcome.spread)
    best = report.best_method_lines(comparison.best_methods(outcome.spread))
    heading = (f"All values in percent, measured on the clean test data and each trigger's poisoned file; \"net\" is "
               f"the repaired net alone, G the repaired detector. {report.over_seeds(args.seeds)}")
    best_heading = "Best method per BadNet (lowest median G ASR plus G accuracy loss, on its worst trigger):"
    verdicts = report.verdict_table(comparison.method_verdicts(outcome.spread))
    verdict_heading = ("Each method against the bar, over every net (a run is one net, trigger and seed; each worst "
                       "case is the median, and range, over the seeds):")
    report.write_text(results / "comparison.md", f"{heading}\n\n{table}\n\n{best_heading}\n\n{best}\n\n"
                                                 f"{verdict_heading}\n\n{verdicts}\n")
    report.write_json(results / "comparison.json", {"seeds": args.seeds, **outcome.to_json()})
    report.write_csv(results / "comparison.csv", comparison.CSV_COLUMNS, outcome.csv_rows())
    print(table)
    print(f"\n{best_heading}\n{best}")
    print(f"\n{verdict_heading}\n{verdicts}")
    print(f"\nWrote {results}/comparison.md, .json and .csv (each cell in {results}/compare/), figures in "
          f"{figures}/, in {time.perf_counter() - started:.0f} s")
    return 0


def run_tradeoff(args: argparse.Namespace) -> int:
    from fineprune.errors import InputError

    check_jobs(args)
    data, models, results = Path(args.data_dir), Path(args.models_dir), Path(args.results_dir)
    figures = Path(args.figures_dir) if args.figures_dir else results
    nets = (*build.BADNETS, *build.EXTRA_BADNETS, *build.ZOO_BADNETS)
    specs = [build.find_net(name, "--badnet", nets) for name in (args.badnet or build.TRADEOFF_NETS)]
    started = time.perf_counter()
    cli.quiet_tensorflow()
    from fineprune import defenses, plots, report
    from fineprune.benchmark import comparison, tradeoff
    from fineprune.defenses.strength import ACCURACY_BUDGET

    methods = [comparison.Method(name, defenses.settings_for(name)) for name in args.method or defenses.names()]
    build.ensure_data(data, say)
    try:
        curves = tradeoff.tradeoff_benchmark(data, models, specs, methods, results / "tradeoff", args.jobs,
                                             args.fresh, say, args.scheduler)
    except KeyboardInterrupt:
        say(f"interrupted; every cell finished so far is kept in {results}/tradeoff/: the same command resumes")
        return 130
    figure = figures / "tradeoff.png"
    plots.draw_tradeoff(curves, figure, ACCURACY_BUDGET)
    table = report.tradeoff_table(curves)
    report.write_text(results / "tradeoff.md", "G's clean accuracy lost (points) and attack success (worst trigger, "
                      "%) at every strength each method's rule measured, seed 0; * marks the rule's pick.\n\n"
                      f"{table}\n")
    report.write_json(results / "tradeoff.json", {net: {label: [vars(p) for p in points]
                                                        for label, points in methods_.items()}
                                                  for net, methods_ in curves.items()})
    print(table)
    print(f"\nWrote {results}/tradeoff.md and .json (each cell in {results}/tradeoff/), {figure}, in "
          f"{time.perf_counter() - started:.0f} s")
    return 0


def run_oracle(args: argparse.Namespace) -> int:
    data, models, results = Path(args.data_dir), Path(args.models_dir), Path(args.results_dir)
    specs = [build.find_net(name, "--badnet") for name in args.badnet] if args.badnet else None
    started = time.perf_counter()
    build.ensure_data(data, say)
    cli.quiet_tensorflow()
    from dataclasses import asdict

    from fineprune import report
    from fineprune.benchmark import comparison
    from fineprune.errors import InputError

    if args.channels < 1:
        raise InputError(f"--channels {args.channels} must be at least 1")
    found = comparison.oracle_benchmark(data, models, specs or build.BADNETS, args.channels, args.seed, say)
    table = report.oracle_table(found)
    report.write_text(results / "oracle.md", table + "\n")
    report.write_json(results / "oracle.json", [asdict(row) for row in found])
    print(table)
    print(f"\nWrote {results}/oracle.md and oracle.json in {time.perf_counter() - started:.0f} s")
    return 0


def run_speed(args: argparse.Namespace) -> int:
    from fineprune.errors import InputError

    spec = build.find_net(args.badnet, "--badnet")
    if args.images < 64:
        raise InputError(f"--images {args.images} must be at least 64")
    if args.repeats < 1:
        raise InputError(f"--repeats {args.repeats} must be at least 1")
    data, models, results = Path(args.data_dir), Path(args.models_dir), Path(args.results_dir)
    build.ensure_data(data, say)
    cli.quiet_tensorflow()
    from dataclasses import asdict

    from fineprune import report
    from fineprune.benchmark.throughput import measure_throughput
    from fineprune.data import open_dataset
    from fineprune.detector import RepairedDetector
    from fineprune.models import load_model, repaired_model_path

    badnet_path = models / spec.model_file
    repaired_path = repaired_model_path(badnet_path)
    # Without a repaired net, a second copy of the BadNet costs G exactly as much.
    second = repaired_path if repaired_path.exists() else badnet_path
    detector = RepairedDetector(load_model(badnet_path), load_model(second))
    clean = open_dataset(data / "clean_test_data.h5")
    x = next(clean.image_chunks(min(args.images, len(clean))))
    say(f"timing {badnet_path} alone and G (with {second}) on {len(x)} images, "
                    f"best of {args.repeats}")
    speed = measure_throughput(detector, x, args.repeats)
    table = report.markdown_table(
        ["images", "one net (images/s)", "G, both nets (images/s)", "G / one net"],
        [[speed.images, round(speed.one_net_images_per_s), round(speed.detector_images_per_s), round(speed.ratio, 2)]])
    print(table)
    report.write_json(results / "speed.json", {**asdict(speed), "ratio": speed.ratio, "badnet": str(badnet_path),
                                               "second_net": str(second)})
    print(f"\nWrote {results}/speed.json")
    return 0


COMMANDS = {"data": build_data, "badnets": train_badnets, "patterns": make_patterns, "fidelity": run_fidelity, "detection": run_detection, "sweep": run_sweep, "gallery": draw_gallery,
            "demo": run_demo, "compare": run_comparison, "tradeoff": run_tradeoff,
            "oracle": run_oracle, "speed": run_speed}

if __name__ == "__main__":
    sys.exit(main())
