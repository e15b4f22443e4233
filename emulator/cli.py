"""`pslab`: the one program that fronts the lab.

Each sub-command lives next to the thing it drives; this module only wires
them together, so it is the one place that may import both the emulator and
the engine (the engine itself never imports the emulator).
"""

from __future__ import annotations

import typer

from contracts.cli import app as contracts_app
from emulator.bench import bench_command
from emulator.demo import demo_command
from emulator.postscript.command import emulator_command
from emulator.segment.command import generate_command
from sync.cli import sync_command

app = typer.Typer(
    name="pslab",
    help="Postscript audience sync lab: emulator, traffic generator, sync engine, contracts.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Postscript audience sync lab: emulator, traffic generator, sync engine, contracts."""


app.command("emulator")(emulator_command)
app.command("generate")(generate_command)
app.command("sync")(sync_command)
app.command("demo")(demo_command)
app.command("bench")(bench_command)
app.add_typer(contracts_app, name="contracts")
