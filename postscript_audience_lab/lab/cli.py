"""`pslab`: the one program that fronts the lab.

Each sub-command lives next to the thing it drives; this module only names
them. A sub-command's module is imported when that sub-command runs (or when
`pslab --help` lists them all), so `pslab sync` never loads the emulator's
web stack or the test libraries.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperGroup

from postscript_audience_lab import __version__

__all__ = ["COMMANDS", "app", "main"]


@dataclass(frozen=True)
class LazyCommand:
    """Where a sub-command is defined: a typer command function or a `typer.Typer` app."""

    target: str  # "module:attribute"

    def load(self, name: str) -> Any:  # a click command (typer vendors click in new releases)
        module_name, attribute = self.target.split(":")
        found = getattr(importlib.import_module(module_name), attribute)
        if isinstance(found, typer.Typer):
            command = typer.main.get_command(found)
        else:
            single = typer.Typer()
            single.command(name)(found)
            command = typer.main.get_command(single)
        command.name = name
        return command


COMMANDS: dict[str, LazyCommand] = {
    "emulator": LazyCommand("postscript_audience_lab.emulator.postscript.command:emulator_command"),
    "generate": LazyCommand("postscript_audience_lab.emulator.segment.command:generate_command"),
    "sync": LazyCommand("postscript_audience_lab.sync.commands.sync:sync_command"),
    "serve": LazyCommand("postscript_audience_lab.sync.commands.serve:serve_command"),
    "reconcile": LazyCommand("postscript_audience_lab.sync.commands.reconcile:reconcile_command"),
    "demo": LazyCommand("postscript_audience_lab.lab.demo:demo_command"),
    "bench": LazyCommand("postscript_audience_lab.lab.bench.command:bench_command"),
    "contracts": LazyCommand("postscript_audience_lab.contracts.cli:app"),
}


class LazyGroup(TyperGroup):
    """A typer group whose sub-commands are imported on first use.

    The context and command types are left as `Any`: older typer releases use
    the `click` package, newer ones a vendored copy, and these two overrides
    work with either.
    """

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        lazy = COMMANDS.get(cmd_name)
        if lazy is None:
            return None
        if cmd_name not in self.commands:
            self.commands[cmd_name] = lazy.load(cmd_name)
        return self.commands[cmd_name]


app = typer.Typer(
    name="pslab",
    cls=LazyGroup,
    help="Postscript audience sync lab: emulator, traffic generator, sync engine, contracts.",
    invoke_without_command=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"pslab {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        callback=_print_version,
        is_eager=True,
    ),
) -> None:
    """Postscript audience sync lab: emulator, traffic generator, sync engine, contracts."""
    if ctx.invoked_subcommand is None:  # bare `pslab` is a request for help, not a mistake
        typer.echo(ctx.get_help())
        raise typer.Exit


def main() -> None:
    """The console script's entry point (and `python -m postscript_audience_lab`'s)."""
    app(prog_name="pslab")
