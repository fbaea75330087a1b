"""The ``curator`` command: run, validate, stages, report, and the commands packages add.

Packages add commands through the ``curator.commands`` entry-point group (``curator train`` comes
from ``classifiers``); they are imported only when named, so ``curator --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import sys
import typing

from importlib.metadata import entry_points

import click

from curator.pipeline import PipelineError, load_pipeline

EXIT_FAILED = 1
EXIT_INVALID = 2


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def _load(pipeline_file: str, overrides: tuple[str, ...], run_dir: str | None, limit: int | None):
    extra = list(overrides)
    try:
        return load_pipeline(pipeline_file, extra, run_dir=run_dir, input_limit=limit)
    except PipelineError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        sys.exit(EXIT_INVALID)


COMMANDS_GROUP = "curator.commands"


class CuratorGroup(click.Group):
    """The ``curator`` group: its own commands plus those of the ``curator.commands`` entry points."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *(ep.name for ep in entry_points(group=COMMANDS_GROUP))})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        for ep in entry_points(group=COMMANDS_GROUP):
            if ep.name == cmd_name:
                loaded = ep.load()
                if not isinstance(loaded, click.Command):
                    raise click.ClickException(f"entry point {ep.value} ({COMMANDS_GROUP}) is not a click command")
                return loaded
        return None


@click.group(cls=CuratorGroup)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug and Dask's own logs).")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Pretraining-data curation pipelines on Dask."""
    _setup_logging(verbose)
    ctx.obj = {"verbose": verbose}


_set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                           help="Override a value of the pipeline file, e.g. stages.text.with.min_chars=50.")
_limit_option = click.option("--limit", type=click.IntRange(min=1), default=None,
                             help="Read at most N files of every file or listing input.")


@main.command()
@click.argument("pipeline_file", type=click.Path(dir_okay=False))
@_set_option
@_limit_option
@click.option("--run-dir", default=None, help="Where stage outputs go (default: run_dir in the file, else runs/NAME).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="CPU workers of the LocalCluster (default: one per core not driving a GPU).")
@click.option("--gpu-workers", type=click.IntRange(min=0), default=None,
              help="GPU workers of the LocalCluster, each advertising the Dask resource GPU=1 "
                   "(default: one per visible CUDA device; 0: none).")
@click.option("--scheduler", default=None, metavar="ADDRESS", help="Run on an existing Dask scheduler (tcp://host:port).")
@click.option("--scheduler-file", default=None, type=click.Path(dir_okay=False), help="Run on the Dask scheduler of this file.")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True, help="Retries of a failed shard.")
@click.option("--dashboard-address", default=":8787", show_default=True, help="Dashboard address of the LocalCluster.")
def run(pipeline_file: str, overrides: tuple[str, ...], limit: int | None, run_dir: str | None,
        workers: int | None, gpu_workers: int | None, scheduler: str | None, scheduler_file: str | None,
        retries: int, dashboard_address: str) -> None:
    """Run a pipeline file; a rerun skips every shard already done."""
    from curator.cluster import dask_client
    from curator.gpu_placement import NoGpuWorkerError
    from curator.progress import ProgressBoard, dashboard_line
    from curator.runner import PipelineRunner

    # Importing distributed set its loggers to INFO; their lines would drown the progress display.
    if click.get_current_context().find_root().obj["verbose"] < 2:
        logging.getLogger("distributed").setLevel(logging.WARNING)

    pipeline = _load(pipeline_file, overrides, run_dir, limit)
    if (scheduler or scheduler_file) and (workers or gpu_workers is not None):
        click.echo("curator: --workers and --gpu-workers size a LocalCluster; they are ignored with --scheduler "
                   "or --scheduler-file", err=True)
    with dask_client(scheduler, scheduler_file, workers, dashboard_address, gpu_workers) as client:
        click.echo(f"curator: pipeline {pipeline.name}, run dir {pipeline.run_dir}", err=True)
        click.echo(dashboard_line(client), err=True)
        try:
            # Logs one line per GPU stage (where it runs, or its CPU fallback) before anything runs.
            result = PipelineRunner(pipeline, client, ProgressBoard(), retries=retries).run()
        except NoGpuWorkerError as exc:
            click.echo("curator: cannot start:", err=True)
            for placement in exc.placements:
                click.echo(f"  {placement.message}", err=True)
            sys.exit(EXIT_FAILED)
    if result.ok:
        click.echo(f"curator: done in {result.seconds:.1f}s; outputs:", err=True)
        for output in pipeline.outputs:
            click.echo(f"  {output.name}: {output.path}", err=True)
        return
    click.echo(f"curator: run FAILED ({len(result.failures)} problem(s)):", err=True)
    for failure in result.failures:
        click.echo(f"  {failure}", err=True)
    click.echo("curator: rerun the same command to retry; finished shards are kept.", err=True)
    sys.exit(EXIT_FAILED)


@main.command()
@click.argument("pipeline_file", type=click.Path(dir_okay=False))
@_set_option
@_limit_option
def validate(pipeline_file: str, overrides: tuple[str, ...], limit: int | None) -> None:
    """Check a pipeline file without running anything (exit code 2 on mistakes)."""
    pipeline = _load(pipeline_file, overrides, None, limit)
    n_files = sum(len(i.files) for i in pipeline.inputs.values())
    click.echo(f"{pipeline_file}: ok ({len(pipeline.stages)} stages, {n_files} input files)")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output with parameter schemas.")
def stages(as_json: bool) -> None:
    """List every registered stage with its parameters and one-line description."""
    from curator.registry import StageRegistry

    registry = StageRegistry.discover()
    entries = []
    for name in registry.names():
        cls = registry.get(name)
        params = []
        for field_name, info in cls.model_fields.items():
            annotation = _type_name(info.annotation)
            default = "required" if info.is_required() else repr(info.default)
            params.append({"name": field_name, "type": annotation, "default": default,
                           "doc": info.description or ""})
        entries.append({"name": name, "summary": cls.summary(), "kind": cls.__mro__[1].__name__, "params": params,
                        "requires": list(cls.requires), "adds": list(cls.adds)})
    if as_json:
        click.echo(json.dumps(entries, indent=1))
        return
    for entry in entries:
        click.echo(f"{entry['name']}  -  {entry['summary']}")
        for p in entry["params"]:
            doc = f"  {p['doc']}" if p["doc"] else ""
            click.echo(f"    {p['name']}: {p['type']} = {p['default']}{doc}")


def _type_name(annotation: object) -> str:
    """A short readable name of a parameter's type annotation."""
    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("-o", "--out", default=None, help="Where to write the HTML (default RUN_DIR/report.html).")
def report(run_dir: str, out: str | None) -> None:
    """Write an HTML report of a run: funnel of documents and bytes per stage, drops, timings."""
    from curator.report import write_report

    try:
        path = write_report(run_dir, out)
    except FileNotFoundError as exc:
        click.echo(f"curator report: {exc}", err=True)
        sys.exit(EXIT_INVALID)
    click.echo(path)


if __name__ == "__main__":
    main()
