"""The deployment recipes in docker/: images, compose, Slurm and Kubernetes files checked against their tools.

Docker, Slurm and Kubernetes do not run here, so each file is checked by what can run: the compose file
against the Compose Specification's JSON schema, the manifests against the fields the Dask operator's
CRDs require, every command line in them through the real click parsers of `curator`, `dask scheduler`
and `dask worker`, the sbatch script by `bash -n` and by running it on this machine with a stand-in
`srun`, and the Dockerfiles against the files of the repository.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

import click
import jsonschema
import pytest
import yaml

from tests.conftest import REPO, read_dataset, write_dataset

DOCKER = REPO / "docker"
COMPOSE_SCHEMA = REPO / "tests" / "data" / "compose_spec" / "compose-spec.json"
DOCKERFILES = ("Dockerfile.cpu", "Dockerfile.gpu")
# Paths the images copy that are not in git: scripts/setup.sh makes them before `docker build`.
MADE_BY_SETUP = {"models/quality": "scripts/build_quality_models.py", "models/scorer": "scripts/build_scorer_model.py"}
# `dask cuda worker` options, from dask-cuda's CLI reference (docs/source/api: "dask cuda worker"), used
# when dask-cuda itself (CUDA machines only) is not installed.
DASK_CUDA_WORKER_OPTIONS = {
    "--host", "--nthreads", "--name", "--memory-limit", "--device-memory-limit", "--rmm-pool-size",
    "--rmm-maximum-pool-size", "--rmm-managed-memory", "--rmm-async", "--pid-file", "--resources",
    "--dashboard", "--no-dashboard", "--dashboard-address", "--local-directory", "--scheduler-file",
    "--protocol", "--interface", "--preload", "--death-timeout", "--dashboard-prefix", "--enable-jit-unspill",
}
DASK_CUDA_VALUE_OPTIONS = DASK_CUDA_WORKER_OPTIONS - {
    "--rmm-managed-memory", "--rmm-async", "--dashboard", "--no-dashboard", "--enable-jit-unspill"}


# -- command lines ----------------------------------------------------------------------------------


def check_command(argv: list[str]) -> None:
    """Parse ``argv`` (``curator ...``, ``dask scheduler|worker ...``, ``dask cuda worker ...``) with the real CLI.

    Raises ``click.UsageError`` (unknown option, missing argument, bad value) or AssertionError.
    """
    program, rest = argv[0], argv[1:]
    if program == "curator":
        from curator.cli import main

        if rest == ["--help"]:
            return
        command = main.get_command(click.Context(main), rest[0])
        assert command is not None, f"no command `curator {rest[0]}`"
        command.make_context(rest[0], list(rest[1:]))
        return
    assert program == "dask", argv
    if rest[:2] == ["cuda", "worker"]:
        _check_dask_cuda_worker(rest[2:])
        return
    commands = {ep.name: ep for ep in entry_points(group="dask_cli")}
    assert rest[0] in commands, f"no command `dask {rest[0]}`"
    command = commands[rest[0]].load()
    command.make_context(f"dask {rest[0]}", list(rest[1:]))


def _check_dask_cuda_worker(args: list[str]) -> None:
    if importlib.util.find_spec("dask_cuda") is not None:
        from dask_cuda.cli import worker

        worker.make_context("dask cuda worker", list(args))
        return
    i = 0
    positional = 0
    while i < len(args):
        if args[i] == "--help":
            return
        if args[i].startswith("--"):
            name = args[i].split("=", 1)[0]
            assert name in DASK_CUDA_WORKER_OPTIONS, f"`dask cuda worker` has no option {name}"
            i += 2 if name in DASK_CUDA_VALUE_OPTIONS and "=" not in args[i] else 1
        else:
            positional += 1
            i += 1
    assert positional <= 1, f"`dask cuda worker` takes one SCHEDULER argument: {args}"


def test_check_command_rejects_what_the_tools_reject() -> None:
    check_command(["dask", "worker", "tcp://scheduler:8786", "--nthreads", "1", "--resources", "GPU=1"])
    check_command(["curator", "run", "p.yaml", "--scheduler", "tcp://s:8786"])
    for bad in (["dask", "worker", "tcp://s:8786", "--threads", "1"],
                ["dask", "worker", "tcp://s:8786", "--nthreads", "x"],
                ["curator", "run", "p.yaml", "--schedulr", "tcp://s:8786"], ["curator", "run"],
                ["dask", "cuda", "worker", "--nworkers", "2"]):
        with pytest.raises((click.UsageError, AssertionError)):
            check_command(bad)


# -- compose --------------------------------------------------------------------------------------


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_file_is_valid_against_the_compose_spec_schema() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    compose = _compose()
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator_cls(schema).iter_errors(compose)]
    assert not errors, errors
    # The schema is strict: a misspelt key or a GPU reservation without its capabilities is refused.
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["comand"] = ["dask", "worker"]
    del broken["services"]["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"]
    messages = [e.message for e in validator_cls(schema).iter_errors(broken)]
    assert len(messages) == 2, messages


def test_compose_services_scheduler_workers_gpu_worker_and_job() -> None:
    services = _compose()["services"]
    assert set(services) == {"scheduler", "worker", "gpu-worker", "curator"}
    for name, service in services.items():
        # Every service builds its image: one that only names it would try to pull it from a registry.
        build = service["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).is_file(), name
        assert "./data:/data" in service["volumes"], name
        check_command(service["command"])
    assert services["scheduler"]["command"][:2] == ["dask", "scheduler"]
    assert "8786:8786" in services["scheduler"]["ports"]
    for name in ("worker", "gpu-worker"):
        assert "tcp://scheduler:8786" in services[name]["command"]
    gpu = services["gpu-worker"]
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert gpu["command"][:3] == ["dask", "cuda", "worker"] and _option(gpu["command"], "--resources") == "GPU=1"
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    job = services["curator"]
    assert job["profiles"] == ["run"]
    assert _option(job["command"], "--scheduler") == "tcp://scheduler:8786"


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# -- Dockerfiles ----------------------------------------------------------------------------------


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in dockerfile.read_text().splitlines()
                                            if not line.lstrip().startswith("#")))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            word, _, args = line.strip().partition(" ")
            pairs.append((word.upper(), args.strip()))
    return pairs


def _git_ignored(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0


def _allowed_by_ignore_file(path: str, ignore_file: Path) -> bool:
    """True when the Dockerfile's ignore file (``*`` then ``!path`` exceptions) sends ``path`` to the build."""
    patterns = [p.strip() for p in ignore_file.read_text().splitlines() if p.strip() and not p.startswith("#")]
    assert patterns[0] == "*", "the ignore files start by excluding everything"
    return any(p.startswith("!") and (path == p[1:] or path.startswith(p[1:].rstrip("/") + "/")) for p in patterns)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_copies_only_files_of_the_repository(name: str) -> None:
    dockerfile = DOCKER / name
    copies = [args.split()[:-1] for word, args in _instructions(dockerfile) if word == "COPY"]
    assert copies
    for sources in copies:
        for source in sources:
            assert not source.startswith("--"), "no COPY --from/--chown: plain copies from the repository"
            if source in MADE_BY_SETUP:
                assert _git_ignored(source) and (REPO / MADE_BY_SETUP[source]).is_file()
                assert "scripts/setup.sh" in dockerfile.read_text(), "the header says to run setup first"
            else:
                assert (REPO / source).exists() and not _git_ignored(source), f"{name}: COPY {source}: not in the repo"
            assert _allowed_by_ignore_file(source, DOCKER / f"{name}.dockerignore"), f"{source} is not sent"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_commands_exist(name: str) -> None:
    instructions = _instructions(DOCKER / name)
    runs = " ".join(args for word, args in instructions if word == "RUN")
    for script in re.findall(r"python3? (scripts/\S+\.py)", runs):
        assert (REPO / script).is_file(), script
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    for group in re.findall(r'pip install -c docker/constraints.txt "\.\[([a-z,]+)\]"', runs):
        assert set(group.split(",")) <= extras, group
    assert '"torch==2.13.0"' in runs, "the torch that pyproject.toml allows, pinned"
    entry = json.loads(next(args for word, args in instructions if word == "ENTRYPOINT"))
    assert entry == ["/usr/bin/tini", "--"] and "tini" in runs
    cmd = json.loads(next(args for word, args in instructions if word == "CMD"))
    check_command(cmd)
    assert cmd[0] == "dask" or cmd[0] in pyproject["project"]["scripts"]


def test_images_share_the_dask_versions_the_gpu_image_pins() -> None:
    pins = dict(line.split("==") for line in (DOCKER / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["dask"] == pins["distributed"]
    gpu = (DOCKER / "Dockerfile.gpu").read_text()
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:\S+-ubuntu\S+$", gpu, re.M) and "FROM ${CUDA_IMAGE}" in gpu
    assert '".[remote,llm,gpu]"' in gpu, "dask-cuda comes with the gpu extra"


# -- Kubernetes -------------------------------------------------------------------------------------


def _manifests() -> list[dict]:
    docs = []
    for path in sorted((DOCKER / "kubernetes").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def _pod_specs(doc: dict) -> list[dict]:
    kind, spec = doc["kind"], doc["spec"]
    if kind == "DaskCluster":
        return [spec["scheduler"]["spec"], spec["worker"]["spec"]]
    if kind == "DaskWorkerGroup":
        return [spec["worker"]["spec"]]
    if kind == "Job":
        return [spec["template"]["spec"]]
    return []


def test_kubernetes_manifests_have_what_the_dask_operator_requires() -> None:
    docs = _manifests()
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc) and doc["metadata"]["name"], doc
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    (cluster,) = by_kind["DaskCluster"]
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    # The operator's CRD (templates.yaml): spec needs scheduler and worker; a scheduler needs spec and
    # service; a worker needs spec (a PodSpec) and may give replicas.
    spec = cluster["spec"]
    assert {"scheduler", "worker"} <= set(spec)
    assert {"spec", "service"} <= set(spec["scheduler"]) and "spec" in spec["worker"]
    assert isinstance(spec["worker"]["replicas"], int)
    # The operator finds the scheduler's ports by these names (tcp-comm, http-dashboard).
    service = spec["scheduler"]["service"]
    assert {p["name"]: p["port"] for p in service["ports"]} == {"tcp-comm": 8786, "http-dashboard": 8787}
    assert service["selector"] == {"dask.org/cluster-name": cluster["metadata"]["name"],
                                   "dask.org/component": "scheduler"}
    (gpu_group,) = by_kind["DaskWorkerGroup"]
    assert gpu_group["apiVersion"] == "kubernetes.dask.org/v1"
    assert gpu_group["spec"]["cluster"] == cluster["metadata"]["name"] and "spec" in gpu_group["spec"]["worker"]
    (gpu_container,) = gpu_group["spec"]["worker"]["spec"]["containers"]
    gpus = gpu_container["resources"]["limits"]["nvidia.com/gpu"]
    assert _option(gpu_container["args"], "--resources") == f"GPU={gpus}"
    (cpu_container,) = spec["worker"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in str(cpu_container) and "--resources" not in cpu_container["args"]


def test_kubernetes_job_runs_curator_on_the_operators_scheduler_service() -> None:
    docs = _manifests()
    cluster = next(d for d in docs if d["kind"] == "DaskCluster")
    job = next(d for d in docs if d["kind"] == "Job")
    assert job["apiVersion"] == "batch/v1"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    (container,) = pod["containers"]
    assert container["args"][:2] == ["curator", "run"]
    assert _option(container["args"], "--scheduler") == f"tcp://{cluster['metadata']['name']}-scheduler:8786"


def test_kubernetes_containers_run_real_commands_and_mount_declared_volumes() -> None:
    docs = _manifests()
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    pod_specs = [p for d in docs for p in _pod_specs(d)]
    assert len(pod_specs) == 4
    for pod in pod_specs:
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for v in volumes.values():
            assert v["persistentVolumeClaim"]["claimName"] in claims
        for container in pod["containers"]:
            assert container["name"] and container["image"].startswith("curator-")
            check_command(container["args"])
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes and mount["mountPath"] == "/data"


# -- Slurm ------------------------------------------------------------------------------------------

SBATCH = DOCKER / "slurm" / "curator.sbatch"


def _script_commands(script: str) -> list[list[str]]:
    """The dask/curator command lines of a shell script (after ``srun`` and its options)."""
    commands = []
    for line in re.sub(r"\\\n", " ", script).splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        try:
            tokens = shlex.split(line)
        except ValueError:
            continue
        if tokens and tokens[0] == "srun":
            tokens = tokens[1:]
            while tokens and tokens[0].startswith("--"):
                tokens = tokens[1:]
        if not tokens or tokens[0] not in ("dask", "curator"):
            continue
        command = []
        for token in tokens:
            if token in ("&", "&&", ";", "|", "||") or token.startswith(("2>", ">")):
                break
            if not re.fullmatch(r"\$\{\w+\[@\]\+.*\}", token):  # an optional array of arguments
                command.append(token.rstrip("&"))
        commands.append(command)
    return commands


def test_sbatch_script_syntax_directives_and_commands() -> None:
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    lines = SBATCH.read_text().splitlines()
    assert lines[0] == "#!/bin/bash"
    first_command = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    directives = [line for line in lines if line.startswith("#SBATCH ")]
    # Slurm reads #SBATCH lines only before the first command of the script.
    assert all(lines.index(d) < first_command for d in directives)
    options = {d.split()[1].split("=")[0] for d in directives}
    assert {"--nodes", "--ntasks-per-node", "--cpus-per-task", "--time"} <= options
    commands = _script_commands(SBATCH.read_text())
    heads = [" ".join(c[:3]) for c in commands]
    assert heads == ["dask scheduler --scheduler-file", "dask worker --scheduler-file", "dask cuda worker",
                     "curator run $PIPELINE"]
    for command in commands:
        check_command(command)


def test_sbatch_script_runs_a_pipeline_on_this_machine(tmp_path: Path) -> None:
    """The script end to end, with one node's stand-in for srun: scheduler file, workers, `curator run`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text('#!/bin/bash\nwhile [ $# -gt 0 ] && [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
    srun.chmod(0o755)
    write_dataset(tmp_path / "in", [[{"id": f"{s}-{r}", "text": f"page {r % 4}"} for r in range(12)]
                                    for s in range(3)])
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("name: sbatch_smoke\ninputs:\n  docs: {dataset: in}\n"
                        "stages:\n  - {id: dedup, uses: dedup.exact, from: docs}\n")
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", SLURM_SUBMIT_DIR=str(tmp_path),
               SLURM_JOB_ID="42", SLURM_CPUS_PER_TASK="2", SLURM_JOB_NUM_NODES="1", TMPDIR=str(tmp_path),
               CURATOR_ENV=str(Path(sys.executable).parent.parent), CURATOR_DASK_INTERFACE="lo",
               CURATOR_DASK_PORT="0", CURATOR_DASHBOARD_PORT="0")
    proc = subprocess.run(["bash", str(SBATCH), str(pipeline), str(tmp_path / "run")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "curator: done in" in proc.stderr
    # The scheduler wrote its file where the workers looked (Dask removes it when the scheduler closes).
    assert (tmp_path / ".dask" / "42").is_dir() and "Scheduler at:     tcp://127.0.0.1:" in proc.stderr
    texts = read_dataset(tmp_path / "run" / "dedup").column("text").to_pylist()
    assert sorted(texts) == [f"page {i}" for i in range(4)]


def _jobqueue_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("jobqueue_cluster", DOCKER / "slurm" / "jobqueue_cluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_jobqueue_variant_builds_slurm_cluster_arguments() -> None:
    module = _jobqueue_module()
    cpu = module.cluster_kwargs(module.parse_args(["p.yaml", "--cores", "8", "--queue", "cpu"]))
    assert cpu["cores"] == cpu["processes"] == 8 and cpu["queue"] == "cpu" and not cpu["job_extra_directives"]
    gpu = module.cluster_kwargs(module.parse_args(["p.yaml", "--cores", "8", "--gpu", "--account", "a"]))
    assert gpu["processes"] == 1 and gpu["job_cpu"] == 8 and gpu["account"] == "a"
    assert gpu["job_extra_directives"] == ["--gres=gpu:1"] and gpu["worker_extra_args"] == ["--resources", "GPU=1"]
    args = module.parse_args(["p.yaml", "--run-dir", "/shared/run"])
    command = module.run_command(args, "tcp://10.0.0.1:8786")
    assert command[:3] == [sys.executable, "-m", "curator.cli"]
    check_command(["curator", *command[3:]])


def test_jobqueue_variant_job_script_with_dask_jobqueue() -> None:
    """With dask-jobqueue installed, SLURMCluster takes the arguments and writes the job script they mean."""
    module = _jobqueue_module()
    from dask_jobqueue import SLURMCluster

    args = module.parse_args(["p.yaml", "--cores", "8", "--memory", "32GiB", "--gpu", "--queue", "gpu"])
    with SLURMCluster(**module.cluster_kwargs(args), scheduler_options={"dashboard_address": ":0"}) as cluster:
        script = cluster.job_script()
    for line in ("#SBATCH -p gpu", "#SBATCH --cpus-per-task=8", "#SBATCH --gres=gpu:1"):
        assert line in script
    assert "--resources GPU=1" in script and "--nthreads 1" in script
