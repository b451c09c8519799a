"""The documentation against the code: every command, subcommand, option, method and make target
that README.md and docs/*.md name exists, and the README stays a front page (at most 300 lines).

What counts as a mention, kept deliberately simple:
- a command is an inline code span, or a line of a code block, that begins with `prune.py`,
  `eval.py`, `inspect_net.py`, `benchmark.py SUBCOMMAND` or `make TARGET` (after any `VAR=value`
  settings and a `python` interpreter); the rest of the span or line is its arguments, and every
  `--option` there (written `--opt VALUE` or `--opt=VALUE`) must be one of that command's options;
  in a code block the line must start with `python` or `make` (lines such as "prune.py, eval.py
  the commands" are a layout, not a command), and a `# comment` is not part of it;
- an option table (rows starting with `|`) under a heading that names exactly one script, such as
  "## eval.py: measure the repair": the options in its first column are that script's;
- `--method NAME` must name a registered repair method or one of the comparison's variants
  ("head lda", ...); a NAME in capitals is a placeholder and is not checked.
"""

from __future__ import annotations

import argparse
import re
from functools import cache
from pathlib import Path

from conftest import REPO_ROOT

SCRIPTS = ("prune.py", "eval.py", "inspect_net.py", "benchmark.py")
COMMAND = re.compile(r"^(?:\w+=\S*\s+)*(?P<python>\S*python3?\s+)?"
                     r"(?P<name>prune\.py|eval\.py|inspect_net\.py|benchmark\.py|make)(?P<rest>(?:\s.*)?)$")
OPTION = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")
METHOD_VALUE = re.compile(r"""--method[ =](?:["']([^"']+)["']|([a-z]\w*))""")
WORD = re.compile(r"\s+([a-z][\w-]*)")  # a subcommand or make target right after the command
INLINE_CODE = re.compile(r"`([^`]+)`")
COMMENT = re.compile(r"\s+#.*$")


@cache
def parsers() -> dict[str, argparse.ArgumentParser]:
    """Each script's argparse parser, and each benchmark.py subcommand's as "benchmark.py NAME"."""
    from fineprune.commands import benchmark, inspect_net, prune
    from fineprune.commands import eval as eval_script

    found = {"prune.py": prune.build_parser(), "eval.py": eval_script.build_parser(),
             "inspect_net.py": inspect_net.build_parser(), "benchmark.py": benchmark.build_parser()}
    for action in found["benchmark.py"]._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                found[f"benchmark.py {name}"] = subparser
    return found


@cache
def make_targets() -> set[str]:
    """The targets the Makefile defines (lines `name: ...`)."""
    text = (REPO_ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][\w-]*):", text, re.M))


@cache
def method_names() -> set[str]:
    """Registered repair methods, and the comparison's variants of them ("head lda", ...)."""
    from fineprune.benchmark.comparison import standard_methods
    from fineprune.defenses import names

    return set(names()) | {method.label for method in standard_methods()}


def check_command(name: str, rest: str) -> list[str]:
    """What is wrong with one command mention: `name` is a script or "make", `rest` its arguments."""
    if name == "make":
        target = WORD.match(rest)
        return [f"make {target.group(1)}: no such target in the Makefile"] if target and \
            target.group(1) not in make_targets() else []
    if name == "benchmark.py" and (sub := WORD.match(rest)):
        if f"benchmark.py {sub.group(1)}" not in parsers():
            return [f"benchmark.py {sub.group(1)}: no such subcommand"]
        name = f"benchmark.py {sub.group(1)}"
    return check_options(name, rest)


def check_options(name: str, text: str) -> list[str]:
    """Every `--option` in `text` that `name`'s parser lacks, and every `--method` value not a method."""
    known = parsers()[name]._option_string_actions
    problems = [f"{name} --{option}: no such option" for option in OPTION.findall(text)
                if f"--{option}" not in known]
    for quoted, bare in METHOD_VALUE.findall(text):
        if (quoted or bare) not in method_names():
            problems.append(f"{name} --method {quoted or bare}: no such method")
    return problems


def heading_script(line: str) -> str | None:
    """The one script a Markdown heading names, if it names exactly one."""
    named = [script for script in SCRIPTS if script in line]
    return named[0] if len(named) == 1 else None


def missing_mentions(text: str, where: str) -> list[str]:
    """Every mention in Markdown `text` of a command, option, method or make target that does not
    exist, as "where:line: what"."""
    problems = []
    in_code_block, section_script = False, None
    for number, line in enumerate(text.splitlines(), start=1):
        found = []
        if line.lstrip().startswith("```"):
            in_code_block = not in_code_block
            continue
        if in_code_block:
            command = COMMAND.match(COMMENT.sub("", line.strip()))
            if command and (command["python"] or command["name"] == "make"):
                found += check_command(command["name"], command["rest"])
        else:
            if line.startswith("#"):
                section_script = heading_script(line)
            for span in INLINE_CODE.findall(line):
                if command := COMMAND.match(span.strip()):
                    found += check_command(command["name"], command["rest"])
            if section_script and line.startswith("|"):
                found += check_options(section_script, line.split("|")[1])
        problems += [f"{where}:{number}: {problem}" for problem in found]
    return problems


def documentation() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def test_every_command_option_method_and_target_the_docs_name_exists() -> None:
    problems = [problem for page in documentation()
                for problem in missing_mentions(page.read_text(), page.relative_to(REPO_ROOT).as_posix())]
    assert not problems, "the documentation names what does not exist:\n" + "\n".join(problems)


def test_the_check_reports_what_does_not_exist() -> None:
    page = "\n".join([
        "Run `prune.py --no-such-option` or `prune.py --method=nosuch`; `prune.py --epochs 3` is fine.",
        "`benchmark.py nosuch`, `benchmark.py compare --only x`, `benchmark.py compare --method 'head lda'`",
        "```",
        "make nosuch        # make demo is only a comment here",
        "python eval.py DATA MODEL --json out.json --nope",
        "prune.py, eval.py     a layout line, not a command: --ignored",
        "```",
        "## inspect_net.py: is this net backdoored?",
        "| `--made-up N` | 1 | an option the table invents |",
    ])
    assert missing_mentions(page, "page.md") == [
        "page.md:1: prune.py --no-such-option: no such option",
        "page.md:1: prune.py --method nosuch: no such method",
        "page.md:2: benchmark.py nosuch: no such subcommand",
        "page.md:2: benchmark.py compare --only: no such option",
        "page.md:4: make nosuch: no such target in the Makefile",
        "page.md:5: eval.py --nope: no such option",
        "page.md:9: inspect_net.py --made-up: no such option",
    ]


def test_the_readme_is_a_front_page_of_at_most_300_lines() -> None:
    lines = len((REPO_ROOT / "README.md").read_text().splitlines())
    assert lines <= 300, f"README.md has {lines} lines; move detail into docs/"


def test_a_table_or_figure_said_to_be_below_is_below() -> None:
    """"the table below" (or figure) points at one further down the same page."""
    problems = []
    for page in documentation():
        lines = page.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            for kind in re.findall(r"\b(table|figure)s? below", line):
                mark = "|" if kind == "table" else "!["
                if not any(later.startswith(mark) for later in lines[number:]):
                    problems.append(f"{page.relative_to(REPO_ROOT)}:{number}: no {kind} below")
    assert not problems, "\n".join(problems)


def test_methods_md_says_which_methods_take_each_option() -> None:
    """Each method setting's row in docs/methods.md's option table starts its meaning with the
    methods that take it (`magnitude`, `finetune`: ..., or "every method: ..."), exactly those."""
    from fineprune.defenses import names, option_fields

    taken = {f"--{name.replace('_', '-')}": {method for method, _ in fields}
             for name, fields in option_fields().items()}
    said: dict[str, set[str]] = {}
    for line in (REPO_ROOT / "docs" / "methods.md").read_text().splitlines():
        cells = line.split("|")
        options = [f"--{option}" for option in OPTION.findall(cells[1])] if line.startswith("|") else []
        for option in (option for option in options if option in taken):
            methods = cells[3].split(": ", 1)[0].strip()
            said[option] = set(names()) if methods == "every method" else \
                {span.split()[0] for span in INLINE_CODE.findall(methods)}
    assert said == taken


def test_the_missing_data_hint_names_a_page_and_section_that_exist() -> None:
    from fineprune.data import first_run_hint

    hint = first_run_hint(Path("data/clean_test_data.h5"))
    page, section = re.search(r"\((docs/\w+\.md), \"([^\"]+)\"\)", hint).groups()
    assert f"## {section}\n" in (REPO_ROOT / page).read_text()


def test_the_lists_of_benchmark_commands_name_every_subcommand() -> None:
    """benchmark.py's module docstring and the README's line `python benchmark.py COMMAND  # ...`."""
    from fineprune.commands import benchmark

    subcommands = {name.split()[1] for name in parsers() if name.startswith("benchmark.py ")}
    in_docstring = set(re.findall(r"python benchmark\.py (\w+)", benchmark.__doc__))
    readme_line = re.search(r"python benchmark\.py COMMAND\s+# (.*)", (REPO_ROOT / "README.md").read_text())
    assert in_docstring == subcommands
    assert set(readme_line.group(1).split(", ")) == subcommands


def test_eval_and_benchmark_help_stay_fast_without_tensorflow() -> None:
    """What fineprune/cli.py's docstring says: their --help never imports TensorFlow."""
    import subprocess
    import sys

    for script in ("eval", "benchmark"):
        code = (f"import sys; from fineprune.commands.{script} import main\n"
                "try: main(['--help'])\nexcept SystemExit: pass\n"
                "sys.exit('tensorflow' in sys.modules)")
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, timeout=60)
        assert done.returncode == 0, f"{script}.py --help imports TensorFlow"


def test_the_one_line_description_says_what_the_tool_is() -> None:
    """The same words in pyproject.toml and atop the package docstring, naming the default method's recipe
    (magnitude pruning) beside Fine-Pruning, not Fine-Pruning alone."""
    import tomllib

    import fineprune

    description = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["description"]
    summary = " ".join(fineprune.__doc__.split("\n\n")[0].split())  # the docstring's first paragraph
    assert summary == f"fineprune: {description[0].lower()}{description[1:]}"
    assert "magnitude-pruning recipe" in description and "Fine-Pruning" in description
    assert parsers()["prune.py"].get_default("method") == "magnitude"
