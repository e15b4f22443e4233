"""The documentation a newcomer reads: a README of a few screens whose links resolve and whose
example event the engine takes, code that names design pages rather than section numbers,
and a layout page that lists every package there is."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import httpx

from tests.processes import PSLAB, running_emulator

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
LINK = re.compile(r"(?<!!)\[[^\]]+\]\(([^)\s]+)\)")
DESIGN_REFERENCE = re.compile(r"docs/design/([\w-]+)\.md(?:#([\w-]+))?")
SOURCES = ("emulator", "sync", "contracts", "tests", "examples", "postscript_audience_lab", "docs")


def anchors(page: Path) -> set[str]:
    """The anchors a Markdown page offers: explicit `{#id}`s and its headings' slugs, made the
    way the site's table of contents makes them."""
    text = page.read_text(encoding="utf-8")
    found = set(re.findall(r"\{#([\w-]+)\}", text))
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("#"):
            title = re.sub(r"\{#[\w-]+\}", "", line.lstrip("#")).strip()
            found.add(re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", title.lower())))
    return found


def python_sources() -> list[Path]:
    files = [ROOT / "noxfile.py"]
    for folder in SOURCES:
        files += [
            path
            for path in (ROOT / folder).rglob("*.py")
            if "__pycache__" not in path.parts and not any(p.is_symlink() for p in path.parents)
        ]
    return files


def test_the_readme_is_a_few_screens() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= 250, f"README.md has {lines} lines; the guides in docs/ hold the rest"


def test_every_link_in_the_readme_resolves() -> None:
    broken = []
    for target in LINK.findall(README.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # an absolute URL: not this repository's to check
        path, _, anchor = target.partition("#")
        page = (ROOT / path) if path else README
        if not page.exists():
            broken.append(f"{target}: no {path}")
        elif anchor and anchor not in anchors(page):
            broken.append(f"{target}: {path or 'README.md'} has no heading #{anchor}")
    assert broken == []


def test_code_names_design_pages_and_anchors_never_section_numbers() -> None:
    numbered, dangling = [], []
    for path in python_sources():
        text = path.read_text(encoding="utf-8")
        name = str(path.relative_to(ROOT))
        if "\u00a7" in text:
            numbered.append(name)
        for page, anchor in DESIGN_REFERENCE.findall(text):
            target = DOCS / "design" / f"{page}.md"
            if not target.exists():
                dangling.append(f"{name}: docs/design/{page}.md")
            elif anchor and anchor not in anchors(target):
                dangling.append(f"{name}: docs/design/{page}.md#{anchor}")
    assert numbered == [], "refer to a design page and its anchor, not to a section number"
    assert dangling == []


def test_the_readmes_example_event_is_taken_by_pslab_sync(tmp_path: Path) -> None:
    section = README.read_text(encoding="utf-8").split("## Sync Segment's events\n", 1)[1]
    example = re.search(r"```json\n(.*?)```", section, re.S)
    assert example is not None, "the section shows an Engage event"
    event = json.loads(example.group(1))
    events = tmp_path / "events.ndjson"
    events.write_text(json.dumps(event) + "\n")
    key = {**os.environ, "POSTSCRIPT_SECRET_KEY": "sk_test_pslab"}
    with running_emulator("--rate-limit", "0") as (url, _):
        seed = {"subscribers": [{"phone_number": event["traits"]["phone"]}]}
        httpx.post(f"{url}/_emulator/subscribers", json=seed).raise_for_status()
        result = subprocess.run(  # noqa: S603 - our own program, fixed arguments
            [*PSLAB, "sync", "--base-url", url, "--input", str(events),
             "--state", str(tmp_path / "state.sqlite"), "--json"],
            capture_output=True, text=True, timeout=60, check=False, env=key,
        )  # fmt: skip
        state = httpx.get(f"{url}/_emulator/state").json()
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["accepted"], summary["applied"], summary["rejected"]) == (1, 1, 0)
    audience = event["context"]["personas"]["computation_key"]
    [subscriber] = state["subscribers"]
    assert subscriber["properties"]["Segment Audiences"] == [audience]


def listed_folders(page: Path) -> set[str]:
    """The folders the layout page's tree names, as paths: two spaces of indent per level,
    and a line may name several siblings."""
    tree = re.search(r"```\n(emulator/.*?)```", page.read_text(encoding="utf-8"), re.S)
    assert tree is not None, "the layout page shows the tree"
    folders: set[str] = set()
    parents: list[str] = []
    for line in tree.group(1).splitlines():
        names = re.findall(r"(?:^|\s{2,})([\w./-]+/)(?=\s|$)", line)
        if not names or not line.strip().startswith(names[0]):
            continue  # a continuation of the description column
        depth = (len(line) - len(line.lstrip())) // 2
        del parents[depth:]
        for name in names:
            folders.add("/".join([*parents, name.rstrip("/")]))
        if len(names) == 1:
            parents.append(names[0].rstrip("/"))
    return folders


def test_the_layout_page_lists_every_package_and_nothing_else() -> None:
    roots = ("emulator", "sync", "contracts", "postscript_audience_lab", "tests")
    packages = {
        str(init.parent.relative_to(ROOT))
        for root in roots
        for init in (ROOT / root).rglob("__init__.py")
        if "__pycache__" not in init.parts
        and not any(parent.is_symlink() for parent in init.parents)
    }
    listed = listed_folders(DOCS / "design" / "layout.md")
    assert sorted(packages - listed) == [], "packages the layout page does not describe"
    assert sorted(listed - packages - {"examples", "docs"}) == [], "listed, but not there"


def test_every_python_and_json_block_of_the_documentation_is_valid() -> None:
    """Blocks the suite runs are run elsewhere (the README's test, the emulator guide's
    curls, the example event); every other Python block at least compiles and every JSON
    block parses, so an example cannot rot into a syntax error."""
    broken = []
    for page in [README, *sorted(DOCS.rglob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for language, code in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
            try:
                if language == "python":
                    compile(code, str(page), "exec")
                elif language == "json":
                    json.loads(code)
            except (SyntaxError, ValueError) as error:
                broken.append(f"{page.relative_to(ROOT)}: {language}: {error}")
    assert broken == []
