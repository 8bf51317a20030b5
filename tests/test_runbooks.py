"""docs/runbooks.md: a section for every shipped rule's runbook link (by the anchors GitHub makes
from the headings), and every `controlplane` command it tells on-call to run exists."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from controlplane.alerting.rules import load_rules
from controlplane.cli import main

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = ROOT / "docs" / "runbooks.md"
# Pages that are not rules: the web watchdog's AlertingStalled (controlplane/alerting/watchdog.py).
OTHER_PAGES = {"AlertingStalled": "alerting-stalled"}


def github_anchors(markdown: str) -> set[str]:
    """The ids GitHub gives headings: lower case, punctuation dropped (hyphens and underscores
    kept), spaces to hyphens; a repeated one gets -1, -2, ..."""
    anchors, seen = set(), {}
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def sections(markdown: str) -> dict[str, str]:
    """Each `## ` section's text by its anchor."""
    out, current = {}, None
    for line in markdown.splitlines():
        if line.startswith("## "):
            current = github_anchors(line).pop()
            out[current] = ""
        elif current:
            out[current] += line + "\n"
    return out


def commands(markdown: str) -> list[str]:
    """The `controlplane ...` commands: lines of the fenced code blocks and inline code spans,
    without a trailing comment or pipe."""
    out, in_code = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif in_code and line.strip().startswith("controlplane "):
            out.append(line.strip())
        elif not in_code:
            out += re.findall(r"`(controlplane [^`]+)`", line)
    return sorted({re.split(r" #| \|", command, maxsplit=1)[0].strip() for command in out})


def test_the_anchor_rules_match_what_github_generates():
    assert github_anchors("## High error rate\n## Pool: saturated (`x`)\n## High error rate") == {
        "high-error-rate", "pool-saturated-x", "high-error-rate-1"}


def test_every_shipped_rule_links_to_a_runbook_section_that_names_it():
    rules = load_rules(ROOT / "alerts" / "rules.yaml")
    text = RUNBOOKS.read_text()
    anchors, by_anchor = github_anchors(text), sections(text)
    links = {rule.name: rule.annotations.get("runbook_url", "") for rule in rules.rules}
    links.update({name: f"docs/runbooks.md#{anchor}" for name, anchor in OTHER_PAGES.items()})
    for name, url in links.items():
        path, _, anchor = url.partition("#")
        assert path == "docs/runbooks.md" and (ROOT / path).is_file(), f"{name}: {url!r} is not this repo's runbooks"
        assert anchor in anchors, f"{name}: docs/runbooks.md has no section #{anchor}"
        assert f"`{name}`" in by_anchor[anchor], f"{name}: its section #{anchor} does not name it"


@pytest.mark.parametrize("line", commands(RUNBOOKS.read_text()))
def test_every_command_in_the_runbooks_exists_with_those_options(line):
    words = shlex.split(line)[1:]
    command, path = main, ["controlplane"]
    while isinstance(command, click.Group) and words and words[0] in command.commands:
        path.append(words[0])
        command = command.commands[words.pop(0)]
    assert not isinstance(command, click.Group), f"{line!r}: {' '.join(path)} needs a subcommand"
    try:
        command.make_context(" ".join(path), words)  # parses arguments and options, runs nothing
    except click.UsageError as exc:
        pytest.fail(f"{line!r}: {exc.format_message()}")


def test_a_published_runbook_base_makes_the_links_absolute(make_app):
    published = "https://git.example/acme/controlplane/blob/main/docs/runbooks.md"
    app = make_app(ALERT_RUNBOOK_BASE_URL=published)
    rule = app.extensions["controlplane.alert_rules"].get("BackupMissing")
    assert rule.annotations["runbook_url"] == f"{published}#backup-missing"
