"""The typer application every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="phirm-scale",
    help=(
        "Restore high-content screening plates by generative inpainting and prove, field by "
        "field, that the biology was kept (PhIRM)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _cluster_options(
    jobs: int = typer.Option(None, "--jobs", help="Jobs per jobqueue pool (fixed), for every "
                             "--cluster of this command that is a jobqueue configuration."),
    adapt: str = typer.Option(None, "--adapt", help="Adaptive jobs per jobqueue pool, MIN:MAX "
                              "(e.g. 0:8)."),
    cluster_timeout: float = typer.Option(10.0, "--cluster-timeout",
                                          help="Seconds a cluster start-up may take (connect, "
                                               "submit); then one error line, exit 2."),
) -> None:
    """Restore high-content screening plates by generative inpainting and prove, field by
    field, that the biology was kept (PhIRM). Cluster options go before the command:
    ``phirm-scale --jobs 4 --cluster-timeout 30 masks PLATE --cluster slurm-cpu``."""
    from phirm_scale.cluster import set_defaults

    set_defaults(jobs=jobs, adapt=adapt, timeout=cluster_timeout)


class CliError(Exception):
    """An error reported to the user as one line, exit code 2."""


def print_table(columns: list[str], rows: list[list], *, title: str | None = None) -> None:
    """A table on stdout: rich box drawing on a terminal; tab-separated values (header
    first, full precision, never cut) when stdout is a file or a pipe."""
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
