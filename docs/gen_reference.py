"""Pages generated at build time (mkdocs-gen-files): the command line and the emulator's HTTP API.

Both come from the code that serves them, the typer app and the emulator's own OpenAPI
document, so the reference cannot drift from what `pslab` does.
"""

from __future__ import annotations

from typing import Any

import mkdocs_gen_files
import typer
from typer.cli import get_docs_for_click

from postscript_audience_lab.emulator.postscript.openapi.document import openapi_document
from postscript_audience_lab.lab.cli import app

METHODS = ("get", "post", "put", "patch", "delete")


def command_line() -> str:
    command = typer.main.get_command(app)
    docs = get_docs_for_click(
        obj=command, ctx=typer.Context(command), name="pslab", title="Command line"
    )
    intro = (
        "Every `pslab` command and option, generated from the program itself "
        "(`pslab COMMAND --help` prints the same).\n\n"
    )
    title, _, rest = docs.partition("\n")
    return f"{title}\n\n{intro}{rest}"


def http_api() -> str:
    document = openapi_document()
    lines = [
        "# The emulator's HTTP API",
        "",
        "Generated from the OpenAPI document the emulator serves at `/openapi.json`",
        "(`/openapi.json?strict=1` for `--strict`). Operations that Postscript's published",
        "reference describes follow it; where it is silent the answer is one of the",
        "[emulator's choices](../design/emulator-choices.md).",
        "",
        document["info"]["description"],
        "",
    ]
    groups: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                operation = item[method]
                group = (
                    "Admin surface (`/_emulator`)"
                    if path.startswith("/_emulator")
                    else "Postscript API"
                )
                groups.setdefault(group, []).append((method.upper(), path, operation))
    for group, operations in groups.items():
        lines += [
            f"## {group}",
            "",
            "| method | path | what it does | answers |",
            "|---|---|---|---|",
        ]
        for method, path, operation in operations:
            summary = (
                operation.get("summary")
                or _first_sentence(operation.get("description", ""))
                or operation.get("operationId", "")
            )
            answers = ", ".join(sorted(operation.get("responses", {})))
            lines.append(f"| {method} | `{path}` | {_cell(summary)} | {answers} |")
        lines.append("")
    return "\n".join(lines)


def _first_sentence(text: str) -> str:
    return text.split(". ")[0].strip()


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


with mkdocs_gen_files.open("reference/cli.md", "w") as page:
    page.write(command_line())
with mkdocs_gen_files.open("reference/http.md", "w") as page:
    page.write(http_api())
