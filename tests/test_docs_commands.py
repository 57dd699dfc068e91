"""Every ``storecast`` command in the docs is checked against the real CLI (so the docs can't rot).

What is collected: each line of a fenced code block (```bash, ```sh, ```shell, ```console,
```zsh or a bare ```) in README.md and docs/*.md that runs ``storecast``. Continuation
lines (``\\``) are joined; comments, a ``$ `` prompt and ``NAME=value`` environment prefixes
are taken off; a trailing ``&`` or anything after a pipe, ``;``, ``&&`` or a redirection is
cut. In a block where any line has a ``$ `` prompt, only prompted lines are commands (the
others are output). Blocks that draw pictures (box-drawing characters, as in
docs/architecture.md) hold no commands. ``<placeholder>`` and ``$VARIABLE`` stand for any
value: the command passes if it parses with some plausible value in their place (a word,
or the number 1 where the option wants a number).

What is checked, in two depths:

- **Parsed, every one** (no side effects): the command path is resolved through the typer
  app (``typer.main.get_command(storecast.cli.app)``), group by group, and the leaf
  command's ``make_context(name, args, resilient_parsing=False)`` must succeed, so an
  unknown or misspelt sub-command, an unknown option, a missing required option or
  argument, an extra argument and a value of the wrong type or out of range all fail.
  Checks a command does in its body (e.g. "give at most one of --stores, --regions and
  --tags") and anything that needs a running cloud are *not* exercised.
- **Executed for real** (a subprocess, exit code 0 required), only the fast commands that
  touch nothing but their working directory: ``storecast --version``, anything with
  ``--help``, ``storecast sim history``, ``storecast registry init`` and ``storecast edge
  init`` (given a genuine ``1.root.json`` made by ``registry init`` at the path the
  command names). Each runs in a fresh temporary directory; absolute paths in it (e.g.
  ``/var/lib/storecast-edge``) are moved under that directory, and ``STORECAST_*``
  variables are cleared. Serving, training, publishing, deploying and the demo are parsed
  only here: tests/test_docs_walkthrough.py runs those blocks as tutorials, against real
  servers, and names the few commands it leaves to other tests (the demo) and why.

Inline code in prose and tables is held to less: a span that starts with ``storecast``
must name real (sub-)commands and only options the command has, and the README's command
list must name every command the CLI has.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer

import storecast.cli

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "zsh"}
PICTURE_CHARS = set("─│┌┐└┘├┤┬┴┼►▼▲◄")
SHELL_OPERATORS = {"&", "&&", "||", "|", ";", ">", ">>", "<", "2>", "2>&1", "&>"}
FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")
PLACEHOLDER = re.compile(r"<[^<>\n]+>|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
ENV_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
MARK = "__doc_placeholder_{}__"
PLACEHOLDER_VALUES = ("placeholder", "1")  # a word, or a number where one is wanted
MIN_COMMANDS = 40  # the extractor must keep finding the docs' commands

# Commands run for real: fast, and writing only into their working directory.
EXECUTED_PATHS = {("sim", "history"), ("registry", "init"), ("edge", "init")}


@dataclass(frozen=True)
class DocCommand:
    """One ``storecast`` command line found in a fenced block of a doc."""

    source: str  # "docs/edge.md:23"
    text: str  # the command as the doc writes it
    argv: tuple[str, ...]  # after "storecast"; placeholders are MARK.format(n)
    env: tuple[tuple[str, str], ...] = field(default=())
    placeholders: int = 0

    def __str__(self) -> str:
        return f"{self.source}: {self.text}"


# -- reading the docs ------------------------------------------------------------------------


def fenced_blocks(text: str) -> Iterator[tuple[int, str, list[str]]]:
    """(first line number, language, lines) of every fenced code block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if opened is None:
            i += 1
            continue
        fence, language = opened.groups()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j])
            j += 1
        yield i + 2, language.lower(), body
        i = j + 1


def logical_lines(first: int, body: list[str]) -> Iterator[tuple[int, str]]:
    """Lines with their ``\\`` continuations joined, numbered by where they start."""
    pending: list[str] = []
    start = first
    for number, line in enumerate(body, start=first):
        if not pending:
            start = number
        stripped = line.strip()
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        yield start, " ".join(pending)
        pending = []
    if pending:
        yield start, " ".join(pending)


def parse_line(source: str, line: str) -> DocCommand | None:
    """The ``storecast`` command on a shell line, or None when the line runs something else."""
    if line.startswith("$ "):
        line = line[2:]
    if line.lstrip().startswith("#"):
        return None
    text = line.split(" #")[0].strip()
    count = 0

    def mark(_: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return MARK.format(count - 1)

    line = PLACEHOLDER.sub(mark, line)
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        if "storecast" in line:
            raise AssertionError(f"{source}: cannot read the shell line {line!r}: {exc}") from exc
        return None
    env: list[tuple[str, str]] = []
    while tokens and ENV_PREFIX.match(tokens[0]):
        name, _, value = tokens.pop(0).partition("=")
        env.append((name, value))
    if not tokens or tokens[0] != "storecast":
        return None
    argv = tokens[1:]
    for n, token in enumerate(argv):
        if token in SHELL_OPERATORS:
            argv = argv[:n]
            break
    return DocCommand(source, text, tuple(argv), tuple(env), count)


def shell_blocks(path: Path) -> Iterator[list[tuple[str, str]]]:
    """The logical lines, as ("docs/edge.md:23", line), of each fenced shell block of a doc.

    In a block where any line has a ``$ `` prompt, only the prompted lines are kept.
    """
    name = path.relative_to(ROOT).as_posix()
    for first, language, body in fenced_blocks(path.read_text(encoding="utf-8")):
        if language not in SHELL_LANGUAGES or any(set(line) & PICTURE_CHARS for line in body):
            continue
        prompted = any(line.lstrip().startswith("$ ") for line in body)
        yield [
            (f"{name}:{number}", line)
            for number, line in logical_lines(first, body)
            if not prompted or line.startswith("$ ")
        ]


def commands_in(path: Path) -> Iterator[DocCommand]:
    for block in shell_blocks(path):
        for source, line in block:
            found = parse_line(source, line)
            if found is not None:
                yield found


def inline_spans(path: Path) -> Iterator[str]:
    """Inline code spans outside fenced blocks, whitespace normalised."""
    text = path.read_text(encoding="utf-8")
    outside: list[str] = []
    inside = False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            outside.append(line)
    for span in re.findall(r"(?<!`)`([^`]+)`(?!`)", "\n".join(outside)):
        yield " ".join(span.split())


DOC_COMMANDS = [command for path in DOC_FILES for command in commands_in(path)]


# -- the CLI ---------------------------------------------------------------------------------


def root_command() -> Any:
    return typer.main.get_command(storecast.cli.app)


def is_group(command: Any) -> bool:
    return hasattr(command, "commands")


def leaf_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if not is_group(command):
        yield path
        return
    for name, sub in command.commands.items():
        yield from leaf_paths(sub, (*path, name))


def check_parses(argv: list[str]) -> str | None:
    """Parse ``storecast argv`` down to its leaf command; None when it parses, else why not.

    A group's own options are flags (a guard test checks it), so the words before a
    sub-command that start with "-" are the group's and the next word names the sub-command.
    """
    command = root_command()
    name = "storecast"
    parent = None
    rest = list(argv)
    try:
        while is_group(command):
            n = next((i for i, word in enumerate(rest) if not word.startswith("-")), len(rest))
            options, rest = rest[:n], rest[n:]
            if not options and not rest:
                return f"`{name}` needs a sub-command"
            context = command.make_context(
                name, [*options, *rest[:1]], parent=parent, resilient_parsing=False
            )
            if not rest:
                return f"`{name}` needs a sub-command"
            sub = command.get_command(context, rest[0])
            if sub is None:
                return f"`{name}` has no sub-command {rest[0]!r}"
            command, name, parent, rest = sub, rest[0], context, rest[1:]
        command.make_context(name, rest, parent=parent, resilient_parsing=False)
    except typer.Exit as exc:  # --help, --version
        return None if exc.exit_code == 0 else f"exit {exc.exit_code}"
    except typer.TyperException as exc:  # click's UsageError and its kin
        return exc.format_message()
    return None


def substitutions(command: DocCommand) -> Iterator[list[str]]:
    """The command's argv with every combination of values for its placeholders."""
    for values in itertools.product(PLACEHOLDER_VALUES, repeat=command.placeholders):
        argv = []
        for word in command.argv:
            for n, value in enumerate(values):
                word = word.replace(MARK.format(n), value)
            argv.append(word)
        yield argv


@pytest.fixture
def doc_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No STORECAST_* settings of whoever runs the tests leak into a parse."""
    for name in list(os.environ):
        if name.startswith("STORECAST_"):
            monkeypatch.delenv(name)
    return monkeypatch


# -- the tests -------------------------------------------------------------------------------


def test_the_docs_hold_commands_to_check() -> None:
    assert len(DOC_COMMANDS) >= MIN_COMMANDS, [str(c) for c in DOC_COMMANDS]


def test_group_options_are_flags_so_the_command_path_can_be_split() -> None:
    def groups(command: Any) -> Iterator[Any]:
        if is_group(command):
            yield command
            for sub in command.commands.values():
                yield from groups(sub)

    for group in groups(root_command()):
        for param in group.params:
            assert param.param_type_name == "option" and param.is_flag, (group.name, param.name)


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["trian", "--quick"], "no sub-command"),
        (["train", "--quik"], "No such option"),
        (["edge", "init", "--home", "h"], "Missing option"),
        (["sim", "history", "--out", "x.csv", "--stores", "many"], "valid integer"),
        (["models", "alias", "demand-lstm"], "Missing argument"),
        (["rollouts", "status", "7", "8"], "unexpected extra argument"),
        (["edge"], "needs a sub-command"),
    ],
)
def test_a_wrong_command_fails_the_parse(
    doc_env: pytest.MonkeyPatch, argv: list[str], problem: str
) -> None:
    error = check_parses(argv)
    assert error is not None and problem.lower() in error.lower(), error


@pytest.mark.parametrize("command", DOC_COMMANDS, ids=str)
def test_documented_command_parses(doc_env: pytest.MonkeyPatch, command: DocCommand) -> None:
    for name, value in command.env:
        doc_env.setenv(name, value)
    errors = [check_parses(argv) for argv in substitutions(command)]
    assert None in errors, f"{command}\n  {errors[0]}"


def is_executed(command: DocCommand) -> bool:
    words = [w for w in command.argv if not w.startswith("-")]
    return (
        "--help" in command.argv
        or command.argv == ("--version",)
        or tuple(words[:2]) in EXECUTED_PATHS
    )


EXECUTED = [command for command in DOC_COMMANDS if is_executed(command)]


@pytest.fixture(scope="module")
def genuine_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real registry's trusted root, for the documented ``edge init`` commands."""
    home = tmp_path_factory.mktemp("registry") / "home"
    done = run_storecast(["registry", "init", "--home", str(home)], home.parent, {})
    assert done.returncode == 0, done.stderr
    return home / "1.root.json"


def run_storecast(
    argv: list[str], cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STORECAST_")}
    return subprocess.run(
        [sys.executable, "-m", "storecast", *argv],
        cwd=cwd,
        env={**clean, "COLUMNS": "200", "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_some_documented_commands_are_executed() -> None:
    paths = {tuple(w for w in c.argv if not w.startswith("-"))[:2] for c in EXECUTED}
    assert paths >= EXECUTED_PATHS, "the docs no longer show one of the executed commands"


@pytest.mark.parametrize("command", EXECUTED, ids=str)
def test_documented_command_runs(tmp_path: Path, genuine_root: Path, command: DocCommand) -> None:
    # Placeholders become words: the executed commands take text where the docs have them.
    argv = next(substitutions(command))
    argv = [str(tmp_path / w.lstrip("/")) if w.startswith("/") else w for w in argv]
    if "--root" in argv and "--help" not in argv:
        root = tmp_path / argv[argv.index("--root") + 1]
        root.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(genuine_root, root)
    done = run_storecast(argv, tmp_path, dict(command.env))
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"


def test_readme_lists_every_command() -> None:
    spans = list(inline_spans(ROOT / "README.md"))
    missing = [
        " ".join(path)
        for path in leaf_paths(root_command())
        if not any(f"storecast {' '.join(path)}" in span for span in spans)
    ]
    assert not missing, f"README.md's command list lacks: {missing}"


def leaf_for(words: list[str]) -> tuple[Any, list[str]]:
    """The deepest command the leading words name, and the words that name it."""
    command = root_command()
    path: list[str] = []
    for word in words:
        if not is_group(command) or word.startswith("-"):
            break
        sub = command.commands.get(word)
        if sub is None:
            break
        command, path = sub, [*path, word]
    return command, path


def test_inline_commands_name_real_commands_and_options() -> None:
    problems = []
    root_options = {opt for p in root_command().params for opt in (*p.opts, *p.secondary_opts)}
    for path in DOC_FILES:
        for span in inline_spans(path):
            if not span.startswith("storecast "):
                continue
            words = span.split()[1:]
            while words and words[0] in root_options:
                words = words[1:]
            command, named = leaf_for(words)
            following = words[len(named)] if len(words) > len(named) else ""
            if is_group(command) and re.fullmatch(r"[a-z][a-z-]*", following):
                problems.append(f"{path.name}: `{span}`: no command {following!r}")
                continue
            options = {"--help"} | {
                opt for p in command.params for opt in (*p.opts, *p.secondary_opts)
            }
            for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", span):
                if option not in options:
                    problems.append(f"{path.name}: `{span}`: no option {option}")
    assert not problems, "\n".join(problems)
