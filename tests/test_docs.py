"""The README and docs/ show only commands, options and links that exist.

Every ``lumbar ...`` command line in a fenced code block of ``README.md``, ``docs/*.md`` or
``bench/README.md`` is walked through the real command tree (the Typer app, in process: no subprocess
per command): each subcommand must exist and each option it uses must be one of that command's options.
Every relative link must point to an existing file, and a ``#fragment`` into a Markdown file to one of
its headings. ``docs/cli.md`` is generated from the same command tree; regenerate it with
``.venv/bin/python tests/test_docs.py`` after changing a command.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CLI_REFERENCE = REPO / "docs" / "cli.md"
REGENERATE = ".venv/bin/python tests/test_docs.py"

#: Tokens that end one shell command and may start the next.
SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")", "then", "do", "else"}
FENCE = re.compile(r"^(\s*)(```|~~~)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def documents() -> list[Path]:
    """The Markdown files whose commands and links are checked."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bench" / "README.md"]


def root_command() -> Any:
    """The ``lumbar`` command tree as Typer builds it (a group of groups and commands)."""
    import typer.main

    from lumbar.cli import app

    return typer.main.get_command(app)


def is_group(command: Any) -> bool:
    """Whether a node of the command tree has subcommands."""
    return hasattr(command, "commands")


def option_names(command: Any) -> set[str]:
    """Every option spelling a command accepts (``--roi``, ``--full``, ``-o``, ``--help``)."""
    names = {"--help"}
    for param in command.params:
        if param.param_type_name == "option":
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


@dataclass(frozen=True)
class Shown:
    """One ``lumbar`` invocation shown in a document."""

    doc: Path
    line: int
    tokens: tuple[str, ...]  # the words after ``lumbar``, up to the end of that shell command

    def where(self) -> str:
        """``README.md:42: lumbar train --dataset ...`` for failure messages."""
        name = self.doc.relative_to(REPO) if self.doc.is_relative_to(REPO) else self.doc.name
        return f"{name}:{self.line}: lumbar {' '.join(self.tokens)}"


def code_blocks(text: str) -> list[tuple[int, list[str]]]:
    """Fenced code blocks as (line number of their first line, their lines)."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] | None = None
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            if current is None:
                current, start = [], number + 1
            else:
                blocks.append((start, current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def logical_lines(lines: list[str], first: int) -> list[tuple[int, str]]:
    """Join backslash continuations and drop shell comments; keep the first line's number."""
    joined: list[tuple[int, str]] = []
    pending, start = "", first
    for offset, line in enumerate(lines):
        if not pending:
            start = first + offset
        line = re.sub(r"(^|\s)#.*$", "", line)
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append((start, pending + line))
        pending = ""
    if pending:
        joined.append((start, pending))
    return joined


def words(line: str) -> list[str]:
    """Shell words, with ``;``, ``&&``, ``|`` and parentheses as words of their own."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote in a shown fragment: plain whitespace words
        return line.split()


def shown_commands(doc: Path) -> list[Shown]:
    """Every ``lumbar`` invocation in the fenced code blocks of ``doc``."""
    shown: list[Shown] = []
    for first, lines in code_blocks(doc.read_text(encoding="utf-8")):
        for number, line in logical_lines(lines, first):
            tokens = words(line)
            at_command = True
            for index, token in enumerate(tokens):
                if token in SEPARATORS:
                    at_command = True
                    continue
                if at_command and ENV_ASSIGNMENT.match(token):
                    continue  # VAR=value lumbar ...
                if at_command and (token == "lumbar" or token.endswith("/bin/lumbar")):
                    rest = []
                    for word in tokens[index + 1 :]:
                        if word in SEPARATORS or word.startswith((">", "2>")):
                            break
                        rest.append(word)
                    shown.append(Shown(doc, number, tuple(rest)))
                at_command = False
    return shown


def check_shown(root: Any, shown: Shown) -> list[str]:
    """What is wrong with one shown invocation: unknown subcommands or options (empty when it parses)."""
    command, path, rest = root, ["lumbar"], list(shown.tokens)
    while is_group(command) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        if name not in command.commands:
            return [
                f"{shown.where()}\n  `{' '.join(path)}` has no subcommand {name!r}; it has {sorted(command.commands)}"
            ]
        command = command.commands[name]
        path.append(name)
    if is_group(command) and rest != ["--help"]:
        return [f"{shown.where()}\n  `{' '.join(path)}` is a group: it needs one of {sorted(command.commands)}"]
    problems = []
    known = option_names(command)
    for word in rest:
        word = word.lstrip("[(")
        if not word.startswith("-") or word == "-" or re.fullmatch(r"-\d[\d.e-]*", word):
            continue
        name = word.split("=", 1)[0].rstrip("])")
        if name not in known:
            problems.append(f"{shown.where()}\n  `{' '.join(path)}` has no option {name}; it has {sorted(known)}")
    return problems


def all_shown() -> list[Shown]:
    """Every ``lumbar`` invocation shown in the checked documents."""
    return [shown for doc in documents() for shown in shown_commands(doc)]


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    """The heading anchors of a Markdown file (outside code blocks)."""
    found: set[str] = set()
    inside = False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            inside = not inside
        elif not inside and line.startswith("#"):
            found.add(github_slug(line.lstrip("#")))
    return found


def broken_links(doc: Path) -> list[str]:
    """Relative links of ``doc`` whose file, or heading in a Markdown file, does not exist."""
    problems = []
    inside = False
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(line):
            inside = not inside
            continue
        if inside:
            continue
        for match in LINK.finditer(line):
            target = match.group(1) or match.group(2)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path_part, _, fragment = target.partition("#")
            resolved = (doc.parent / path_part).resolve() if path_part else doc
            where = f"{doc.relative_to(REPO)}:{number}: ({target})"
            if not resolved.exists():
                problems.append(f"{where}: {path_part} does not exist")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                problems.append(f"{where}: {resolved.name} has no heading #{fragment}")
    return problems


def _default(param: Any) -> str:
    """How ``--help`` would show a parameter's default, or an empty string."""
    default = param.default
    if param.secondary_opts and isinstance(default, bool):  # --roi/--full
        return f"`{param.opts[0] if default else param.secondary_opts[0]}`"
    if default is None or default == () or default == [] or (param.is_flag and default is False):
        return ""
    return f"`{default}`"


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def render_cli_reference(root: Any) -> str:
    """``docs/cli.md``: every command with its arguments and options, from the command tree itself."""
    out = [
        "# Command-line reference",
        "",
        "Generated from the `lumbar` command tree (what `lumbar <command> --help` prints) by",
        f"`{REGENERATE}`; `tests/test_docs.py` fails when it is out of date. Bad input gives one line,",
        "`error: ...`, and exit code 2. Guides: [data](data.md), [storage and tracking](storage.md),",
        "[training](training.md), [pretraining](pretraining.md), [pipelines](pipelines.md),",
        "[cluster](cluster.md), [grading](grading.md).",
        "",
    ]

    def visit(command: Any, path: list[str]) -> None:
        name = " ".join(path)
        if is_group(command):
            if len(path) > 1:
                out.extend([f"## `{name}`", "", _cell(command.help), ""])
            for sub in sorted(command.commands):
                visit(command.commands[sub], [*path, sub])
            return
        heading = "##" if len(path) == 2 else "###"
        out.extend([f"{heading} `{name}`", "", _cell(command.help), ""])
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        usage = " ".join([name, "[OPTIONS]", *(p.name.upper() + ("..." if p.nargs != 1 else "") for p in arguments)])
        out.extend(["```", usage, "```", ""])
        rows = []
        for param in command.params:
            if getattr(param, "hidden", False):
                continue
            if param.param_type_name == "argument":
                names = f"`{param.name.upper()}`"
            else:
                names = " / ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
            required = "yes" if param.required else ""
            meaning = _cell(getattr(param, "help", ""))
            if getattr(param, "envvar", None):
                meaning += f" (environment: `{param.envvar}`)"
            rows.append(f"| {names} | {required} | {_default(param)} | {meaning} |")
        if rows:
            out.extend(["| argument / option | required | default | meaning |", "|---|---|---|---|", *rows, ""])

    visit(root, ["lumbar"])
    return "\n".join(out).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def root() -> Any:
    return root_command()


def test_every_shown_lumbar_command_and_option_exists(root: Any) -> None:
    shown = all_shown()
    assert len(shown) >= 30, "the documents show far fewer lumbar commands than expected: is the parser broken?"
    problems = [problem for item in shown for problem in check_shown(root, item)]
    assert not problems, "commands shown in the docs that the CLI does not have:\n" + "\n".join(problems)


def test_the_checker_catches_a_wrong_subcommand_and_a_wrong_option(root: Any, tmp_path: Path) -> None:
    doc = tmp_path / "probe.md"
    doc.write_text(
        "Text with `lumbar nonsense` outside a code block is not checked.\n\n```bash\n"
        "export X=1 && lumbar dataset biuld --out x   # a comment --not-an-option\n"
        "LUMBAR_DATA_DIR=d lumbar train --dataset d --out m --no-such-option 3 \\\n  --roi\n"
        "lumbar pipeline compile paper -o p.yaml; lumbar paper values [--format csv]\n"
        "lumbar pipeline\n```\n",
        encoding="utf-8",
    )
    shown = shown_commands(doc)
    assert [item.tokens[:2] for item in shown] == [
        ("dataset", "biuld"),
        ("train", "--dataset"),
        ("pipeline", "compile"),
        ("paper", "values"),
        ("pipeline",),
    ]
    assert shown[1].line == 5 and shown[1].tokens[-1] == "--roi"
    problems = [problem for item in shown for problem in check_shown(root, item)]
    assert len(problems) == 3, problems
    assert "no subcommand 'biuld'" in problems[0]
    assert "no option --no-such-option" in problems[1]
    assert "is a group" in problems[2]


def test_every_relative_link_points_to_an_existing_file_and_heading() -> None:
    problems = [problem for doc in documents() for problem in broken_links(doc)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_cli_reference_is_generated_from_the_cli(root: Any) -> None:
    assert CLI_REFERENCE.read_text(encoding="utf-8") == render_cli_reference(root), (
        f"docs/cli.md is out of date: regenerate it with `{REGENERATE}`"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    CLI_REFERENCE.write_text(render_cli_reference(root_command()), encoding="utf-8")
    print(f"wrote {CLI_REFERENCE.relative_to(REPO)}")
