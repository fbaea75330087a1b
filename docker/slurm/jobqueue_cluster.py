"""Run a curator pipeline on Slurm through dask-jobqueue: workers are Slurm jobs that this script submits.

Run it on a login node (or in a small job) with this repository's environment, on a filesystem every
node sees; it needs ``pip install dask-jobqueue``::

    python docker/slurm/jobqueue_cluster.py pipelines/nemotron_cc.yaml --jobs 8 --cores 32 \\
        --memory 128GiB --walltime 12:00:00 --queue cpu --account myproject
    python docker/slurm/jobqueue_cluster.py pipelines/sample.yaml --jobs 2 --gpu --queue gpu

The Dask scheduler runs in this process; each Slurm job starts single-threaded worker processes (one
per core). With ``--gpu`` every job asks Slurm for one GPU (``--gres=gpu:1``) and its cores, and starts
one worker process advertising the resource ``GPU=1``, so the pipeline's GPU stages run there (one
process per GPU: Dask's plain worker does not split a job's GPUs between processes). A SLURMCluster
has one job shape: for CPU and GPU workers side by side, use ``curator.sbatch``. Once the workers are
up, the run goes through the same command as everywhere else: ``curator run PIPELINE --scheduler ADDRESS``.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from typing import Any

log = logging.getLogger("curator.slurm")

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: the pipeline, the job shape and how many jobs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", help="the pipeline file to run")
    parser.add_argument("--run-dir", default=None, help="where stage outputs go (default: the pipeline's)")
    parser.add_argument("--jobs", type=int, default=2, help="Slurm jobs of workers (default 2)")
    parser.add_argument("--cores", type=int, default=16, help="cores per job: one worker process each (default 16)")
    parser.add_argument("--memory", default="64GiB", help="memory per job (default 64GiB)")
    parser.add_argument("--walltime", default="12:00:00", help="time limit of each job (default 12:00:00)")
    parser.add_argument("--queue", default=None, help="Slurm partition (#SBATCH -p)")
    parser.add_argument("--account", default=None, help="Slurm account (#SBATCH -A)")
    parser.add_argument("--gpu", action="store_true", help="GPU jobs: one GPU and one worker process each")
    parser.add_argument("--interface", default=None, help="network interface for Dask, e.g. ib0")
    parser.add_argument("--local-directory", default="$TMPDIR", help="worker scratch space (default $TMPDIR)")
    parser.add_argument("--wait-timeout", type=float, default=1800, help="seconds to wait for the first workers")
    parser.add_argument("--print-job-script", action="store_true", help="print one job's script and stop")
    return parser.parse_args(argv)


def cluster_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``dask_jobqueue.SLURMCluster`` for the job shape the arguments ask for."""
    processes = 1 if args.gpu else args.cores
    kwargs: dict[str, Any] = {
        "cores": processes,               # one thread per worker process: cores == processes
        "processes": processes,
        "memory": args.memory,
        "walltime": args.walltime,
        "job_name": "curator-worker",
        "local_directory": args.local_directory,
        "job_extra_directives": [],
        "worker_extra_args": [],
    }
    if args.gpu:
        # The job still books all its cores: data loading and tokenising around the GPU work use them.
        kwargs["job_cpu"] = args.cores
        kwargs["job_extra_directives"].append("--gres=gpu:1")
        kwargs["worker_extra_args"] += ["--resources", "GPU=1"]
    if args.queue:
        kwargs["queue"] = args.queue
    if args.account:
        kwargs["account"] = args.account
    if args.interface:
        kwargs["interface"] = args.interface
    return kwargs


def run_command(args: argparse.Namespace, address: str) -> list[str]:
    """The ``curator run`` command line that sends the pipeline to the scheduler at ``address``."""
    command = [sys.executable, "-m", "curator.cli", "run", args.pipeline, "--scheduler", address]
    if args.run_dir:
        command += ["--run-dir", args.run_dir]
    return command


def main(argv: list[str] | None = None) -> int:
    """Start the Slurm-backed cluster, run the pipeline on it, close the cluster; the run's exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        log.error("dask-jobqueue is not installed: pip install dask-jobqueue")
        return 2
    from distributed import Client

    with SLURMCluster(**cluster_kwargs(args)) as cluster:
        if args.print_job_script:
            sys.stdout.write(cluster.job_script() + "\n")
            return 0
        cluster.scale(jobs=args.jobs)
        log.info("submitted %d Slurm jobs; scheduler at %s, dashboard %s", args.jobs,
                 cluster.scheduler_address, cluster.dashboard_link)
        with Client(cluster) as client:
            # Waiting for every worker of the first job is enough to start; later jobs join as Slurm starts them.
            client.wait_for_workers(cluster_kwargs(args)["processes"], timeout=args.wait_timeout)
        return subprocess.call(run_command(args, cluster.scheduler_address))


if __name__ == "__main__":
    sys.exit(main())
