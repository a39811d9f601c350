"""The README's commands work as printed: every `python -m sharpness ...` line in its bash blocks parses with the
command line it names, and every `papermill ... -p NAME` names a parameter of that notebook."""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path

import pytest

from sharpness.__main__ import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]


#: Placeholders the README asks the reader to replace, and a value of the kind they stand for.
PLACEHOLDERS = {"PASTE_THE_COMMIT_PRINTED_ABOVE": "4000836"}


def without_comment(line: str) -> str:
    """`line` up to its comment: a # that starts a word outside quotes, as bash reads it (shlex's `comments`
    would also cut at the # inside ${s#*:})."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line


def bash_commands(text: str) -> list[list[str]]:
    """Each simple command of the README's ```bash blocks, as words: continued lines joined, comments dropped,
    `A=...` assignments substituted where later lines use $A, `&&` and `;` chains split."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        variables: dict[str, str] = {}
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\$([A-Z_]+)", lambda m: variables.get(m.group(1), m.group(0)), without_comment(line))
            words = shlex.split(line)
            if len(words) == 1 and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                name, value = words[0].split("=", 1)
                variables[name] = value  # expanded unquoted, as bash splits it into words
                continue
            command: list[str] = []
            for word in [PLACEHOLDERS.get(word, word) for word in words] + ["&&"]:
                if word in ("&&", ";"):
                    if command:
                        commands.append(command)
                    command = []
                else:
                    command.append(word)
    return commands


def sharpness_invocations(commands) -> list[list[str]]:
    """The arguments after `-m sharpness` of every command that runs the library's command line."""
    return [words[words.index("-m") + 2:] for words in commands
            if "-m" in words and words[words.index("-m") + 1:words.index("-m") + 2] == ["sharpness"]]


def notebook_parameters(notebook: Path) -> set[str]:
    """The names its cell tagged "parameters" assigns (what papermill's -p can set)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    tagged = [cell for cell in cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert tagged, f"{notebook} has no cell tagged 'parameters'"
    tree = ast.parse("".join(tagged[0]["source"]))
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}


README_COMMANDS = bash_commands((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_reader_finds_the_commands():
    """The parser above sees what a reader sees: a joined continuation line and an expanded variable."""
    sample = ("```bash\nREH=\"--seeds 0 1\"\nAT=/tmp/x\n.venv/bin/python -m sharpness campaign $REH \\\n    --out o  # lease 1\n"
              "cd x && python -m sharpness fit --out $AT/y#1\nls ${s#*:} # a comment\n```\n")
    assert sharpness_invocations(bash_commands(sample)) == [["campaign", "--seeds", "0", "1", "--out", "o"],
                                                            ["fit", "--out", "/tmp/x/y#1"]]
    assert ["ls", "${s#*:}"] in bash_commands(sample)
    assert len(sharpness_invocations(README_COMMANDS)) >= 10


@pytest.mark.parametrize("arguments", sharpness_invocations(README_COMMANDS), ids=" ".join)
def test_every_library_command_in_the_readme_parses(arguments):
    assert arguments[0] in COMMANDS, f"the README runs `python -m sharpness {arguments[0]}`, which is no command"
    build_parser(arguments[0]).parse_args(arguments)  # argparse exits (a failure here) on a misspelt option


def test_every_papermill_parameter_in_the_readme_is_the_notebooks():
    runs = [words for words in README_COMMANDS if words and words[0].endswith("papermill")]
    assert runs, "the README shows papermill runs"
    for words in runs:
        notebook = ROOT / words[1]
        named = {words[i + 1] for i, word in enumerate(words) if word == "-p"}
        assert named <= notebook_parameters(notebook), (words, named - notebook_parameters(notebook))


def test_every_make_target_in_the_readme_is_the_makefiles():
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(encoding="utf-8"), flags=re.M))
    used = {words[1] for words in README_COMMANDS if len(words) > 1 and words[0] == "make"}
    assert {"book", "test"} <= used and used <= targets, used - targets


def test_the_readme_placeholder_for_a_commit_is_refused_until_replaced():
    """The device workflow asks the reader to paste a commit: left as printed, campaign says what to pass."""
    with pytest.raises(SystemExit):
        build_parser("campaign").parse_args(["campaign", "--commit", next(iter(PLACEHOLDERS))])
    assert build_parser("campaign").parse_args(["campaign", "--commit", "4000836"]).commit == "4000836"


def test_the_readmes_account_of_the_cpu_families_plan_states_the_plans_own_numbers():
    """The seeds and the count of minima the README promises are the plan's (`cpu_families`), so a change to one
    that leaves the other behind fails here."""
    from sharpness.studies import cpu_families

    text = " ".join((ROOT / "README.md").read_text().split())
    families, cells = cpu_families.FAMILY_SEEDS, cpu_families.BATCH_LR_SEEDS
    assert f"x seeds {families[0]}-{families[-1]} on three more network families" in text
    assert f"on the study's network, seeds {cells[0]}-{cells[-1]}" in text
    minima = cpu_families.MINIMA_PER_CONTROL
    assert (f"is left short of {minima['families']} ({minima['batch-lr']}) of them, the plan adds the next seed of all six "
            f"controls, at most {cpu_families.MAX_RESERVE_SEEDS} more") in text
    assert list(families) == list(range(len(families))) and list(cells) == list(range(len(cells)))  # "a-b" is a range
