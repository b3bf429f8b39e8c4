"""``phirm-scale cluster show|check|list``: inspect and try the jobqueue configurations."""

from __future__ import annotations

import typer

from phirm_scale.cli._app import app

cluster_app = typer.Typer(
    help="Inspect and try cluster configurations (dask-jobqueue YAML).", no_args_is_help=True
)
app.add_typer(cluster_app, name="cluster")


@cluster_app.command("list")
def list_cmd() -> None:
    """List the shipped configuration names and where they are."""
    from phirm_scale.cluster import CONFIG_DIR, known_configs

    for name in known_configs():
        typer.echo(f"{name}\t{CONFIG_DIR / (name + '.yaml')}")


@cluster_app.command("show")
def show_cmd(
    spec: str = typer.Argument(..., help="Configuration name, YAML path, or A+B."),
) -> None:
    """Print the job script each configuration would submit (nothing is submitted)."""
    from phirm_scale.jobqueue import job_scripts

    for path, script in job_scripts(spec):
        typer.echo(f"# --- {path}")
        typer.echo(script.rstrip("\n"))


@cluster_app.command("check")
def check_cmd(
    spec: str = typer.Argument(..., help="Configuration name, YAML path, or A+B."),
    wait: float = typer.Option(600.0, "--wait", help="Seconds to wait for the workers."),
) -> None:
    """Submit one job per configuration, wait for its worker(s), report the time, cancel."""
    import time

    from phirm_scale.cluster import _DEFAULTS, resolve_config
    from phirm_scale.errors import PhirmError
    from phirm_scale.jobqueue import JobPools

    configs = [resolve_config(p.strip()) for p in spec.split("+")]
    t0 = time.perf_counter()
    with JobPools(configs, jobs=1, timeout=_DEFAULTS["timeout"]) as pools:
        from distributed import Client

        with Client(pools.primary, timeout=f"{_DEFAULTS['timeout']}s") as client:
            want = sum(
                len(cl.worker_spec) and cl._dummy_job.worker_processes for cl in pools.clusters
            )
            typer.echo(
                f"submitted: {'; '.join(pools.scaled)}; waiting for {want} "
                f"worker(s) at {pools.primary.scheduler_address}"
            )
            try:
                client.wait_for_workers(want, timeout=wait)
            except (TimeoutError, OSError):
                have = len(client.scheduler_info(n_workers=-1)["workers"])
                raise PhirmError(
                    f"{spec}: {have} of {want} workers connected within "
                    f"{wait:g} s (check the job logs and squeue/qstat)"
                ) from None
            dt = time.perf_counter() - t0
            info = client.scheduler_info(n_workers=-1)["workers"]
            for w in sorted(info.values(), key=lambda w: w["name"]):
                res = ",".join(f"{k}={v:g}" for k, v in (w.get("resources") or {}).items())
                typer.echo(
                    f"worker {w['name']} at {w['host']}: {w['nthreads']} threads, "
                    f"{w['memory_limit'] / 1e9:.1f} GB" + (f", {res}" if res else "")
                )
            typer.echo(f"{spec}: {want} worker(s) up {dt:.1f} s after submission")
