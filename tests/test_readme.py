"""The README and docs/*.md cannot rot: every command in their shell blocks names an existing file and only options that exist."""
import re
import shlex
from functools import lru_cache

import pytest

from conftest import REPO, run_cli

ENV_PREFIX = re.compile(r"^(\w+=\S*\s+)*")
PYTHON = re.compile(r"^(\.venv/bin/)?python3?$")


def readme_commands() -> list[str]:
    text = "\n".join(p.read_text(encoding="utf-8") for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    commands = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = ENV_PREFIX.sub("", line.split(" # ")[0].strip())
            if re.match(r"^((\.venv/bin/)?python3? |bash |torchrun )", line):
                commands.append(line)
    return commands


def target_and_args(command: str) -> tuple[str, list[str]]:
    words = shlex.split(command.replace("<", "'<").replace(">", ">'"))
    if words[0] == "bash":
        return words[1], words[2:]
    if words[0] == "torchrun":
        words = words[1:]
        while words[0].startswith("--"):
            words = words[2:] if "=" not in words[0] else words[1:]
        return words[0], words[1:]
    assert PYTHON.match(words[0]), command
    if words[1] == "-m":
        return words[2], words[3:]
    return words[1], words[2:]


@lru_cache(maxsize=None)
def help_text(script: str) -> str:
    proc = run_cli([script, "--help"], timeout=120)
    assert proc.returncode == 0, f"{script} --help failed:\n{proc.stderr[-2000:]}"
    return proc.stdout


COMMANDS = readme_commands()


def test_readme_names_the_two_commands():
    assert "bash scripts/quickstart.sh" in COMMANDS
    assert "bash scripts/test.sh" in COMMANDS
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_targets_exist_and_options_are_known(command):
    target, args = target_and_args(command)
    if target == "pytest":
        for path in args:
            if path.startswith("tests/"):
                assert (REPO / path).is_file(), path
        return
    assert (REPO / target).is_file(), f"README runs a missing file: {target}"
    if not target.endswith(".py"):
        return
    flags = [a.split("=")[0] for a in args if a.startswith("--")]
    if not flags:
        return
    text = help_text(target)
    for flag in flags:
        assert re.search(re.escape(flag) + r"\b", text), f"{target} has no option {flag} (README: {command})"


DOC_PAGES = ["INSTALL", "DATA", "TRAINING", "EXPERIMENTS", "REPORTS", "MONITORING", "UPSTREAM_DIFF"]
MARKDOWN_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def heading_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*", "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {heading_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_readme_is_short_and_links_every_docs_page():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 160
    for page in DOC_PAGES:
        assert f"(docs/{page}.md)" in readme, page


@pytest.mark.parametrize("page", DOC_PAGES)
def test_docs_page_opens_with_title_and_english_summary(page):
    lines = (REPO / "docs" / f"{page}.md").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# ")
    assert any(line.startswith("**English summary.**") for line in lines[1:6]), page


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(path):
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+://", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.name} links to a missing file: {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{path.name} links to a missing heading: {target}"
