"""The typer application every command module registers on."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import typer


def _flags_without_type() -> None:
    """Show flags as flags in ``--help``, without a type after them.

    This typer's rich help prints every option's type, flags included: ``--quiet <bool>``,
    ``--verbose <int>`` (a count), which reads as if they took a value; a flag takes none.
    """
    from typer.core import TyperOption

    show = getattr(TyperOption, "display_type_rich", None)
    if show is None or getattr(show, "_phirm_flags", False):  # another typer, or done
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) or getattr(self, "count", False):
            return None
        return show(self, ctx)

    display_type_rich._phirm_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_without_type()

app = typer.Typer(
    name="phirm-scale",
    help=(
        "Restore high-content screening plates by generative inpainting and prove, field by "
        "field, that the biology was kept (PhIRM)."
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        from phirm_scale import __version__

        typer.echo(f"phirm-scale {__version__}")
        raise typer.Exit()


@app.callback()
def _cluster_options(
    ctx: typer.Context,
    jobs: int = typer.Option(
        None,
        "--jobs",
        help="Jobs per jobqueue pool (fixed), for every "
        "--cluster of this command that is a jobqueue configuration.",
    ),
    adapt: str = typer.Option(
        None, "--adapt", help="Adaptive jobs per jobqueue pool, MIN:MAX (e.g. 0:8)."
    ),
    cluster_timeout: float = typer.Option(
        10.0,
        "--cluster-timeout",
        help="Seconds a cluster start-up may take (connect, submit); then one error line, exit 2.",
    ),
    verbose: int = typer.Option(
        0,
        "--verbose",
        "-v",
        count=True,
        help="Show debug messages of the stages (tasks, cluster) on stderr.",
    ),
    quiet: bool = typer.Option(
        False,
        "--quiet",
        "-q",
        help="Print only results (tables, --json) and errors: no progress, no info messages.",
    ),
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version_callback,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Restore screening plates by generative inpainting; prove that the biology was kept.

    Each field is checked with PhIRM. Cluster options go before the command:
    ``phirm-scale --jobs 4 --cluster-timeout 30 masks PLATE --cluster slurm-cpu``;
    ``--quiet``/``-q`` and ``--verbose``/``-v`` may go anywhere.
    """
    from phirm_scale.cluster import set_defaults
    from phirm_scale.progress import configure_logging

    ctx.call_on_close(configure_logging(-1 if quiet else verbose))
    set_defaults(jobs=jobs, adapt=adapt, timeout=cluster_timeout)


def echo_json(obj: Any) -> None:
    """Print one JSON object on stdout (NaN/inf as null)."""
    import json
    import math

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if hasattr(v, "item") and not isinstance(v, (str, bytes)):
            return clean(v.item())
        return v

    typer.echo(json.dumps(clean(obj)))


class Mode(StrEnum):
    """PhIRM definition: the paper's text or the published code.

    The ``--mode`` of ``metric``, ``score`` and ``masks --method saturation``.
    """

    paper = "paper"
    reference = "reference"


def print_table(columns: list[str], rows: list[list[Any]], *, title: str | None = None) -> None:
    """Print a table on stdout.

    Rich box drawing on a terminal; tab-separated values (header first, full precision,
    never cut) when stdout is a file or a pipe.
    """
    import sys

    if not sys.stdout.isatty():
        if title:
            print(f"# {title}")
        print("\t".join(columns))
        for r in rows:
            print("\t".join("" if v is None else str(v) for v in r))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    Console().print(t)
