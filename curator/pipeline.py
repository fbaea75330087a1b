"""Pipeline files: loading, ``--set`` overrides and validation before anything runs.

A pipeline file is YAML::

    name: sample
    imports: [my_package.stages, ./local_stages.py]   # optional: extra stage classes
    inputs:
      crawl: {files: ../sample_data/sample.warc.gz}   # path, glob, list, or fsspec URL
      cc:    {listing: warc.paths.gz, prefix: "https://data.commoncrawl.org/", limit: 10}
      docs:  {dataset: ../some/parquet_dir}
    stages:
      - id: warc
        uses: io.warc            # a registered stage name (see `curator stages`)
        from: crawl              # one or more input names or stage ids
        with: {}                 # the stage's parameters
        keep_rejected: false     # write dropped rows to <stage>/_rejected/
    outputs:
      documents: {from: warc, path: ../out/documents}

Relative paths inside the file are relative to the file's folder. Every mistake is reported as
one line ``FILE:LINE: KEY: message`` and nothing is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from curator.registry import StageRegistry
from curator.stage import GlobalStage, SourceStage, Stage, nested_models, path_params
from curator.storage import InputFile, expand_paths, file_fingerprint, is_remote, list_shards, read_listing, read_schema

TOP_KEYS = {"name", "run_dir", "imports", "inputs", "stages", "outputs", "batch_rows"}
STAGE_KEYS = {"id", "uses", "from", "with", "keep_rejected", "batch_rows"}
INPUT_KINDS = ("files", "listing", "dataset")
INPUT_KEYS = {"files", "listing", "dataset", "prefix", "limit"}
OUTPUT_KEYS = {"from", "path"}
DEFAULT_BATCH_ROWS = 10_000


class PipelineError(Exception):
    """One or more mistakes in a pipeline file, each printed as one line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class InputSpec:
    """A named input: a list of files (for source stages) or a Parquet dataset."""

    name: str
    kind: str  # "files" or "dataset"
    files: list[InputFile]
    columns: list[str] | None = None


@dataclass
class StageSpec:
    """One stage of a pipeline as written in the file, with its stage object built."""

    id: str
    uses: str
    stage: Stage
    upstream: list[str]
    keep_rejected: bool = False
    batch_rows: int = DEFAULT_BATCH_ROWS
    columns: list[str] | None = None
    key_path: tuple = field(default=(), repr=False)
    """Where the stage is written in the file (for error messages)."""

    @property
    def kind(self) -> str:
        """'source', 'map' or 'global'."""
        if isinstance(self.stage, SourceStage):
            return "source"
        if isinstance(self.stage, GlobalStage):
            return "global"
        return "map"


@dataclass
class OutputSpec:
    """A named output: the dataset of a stage, exported to a path."""

    name: str
    source: str
    path: str


@dataclass
class Pipeline:
    """A validated pipeline: inputs, stages in dependency order, outputs."""

    name: str
    file: str
    base_dir: str
    run_dir: str
    imports: list[str]
    inputs: dict[str, InputSpec]
    stages: list[StageSpec]
    outputs: list[OutputSpec]
    registry: StageRegistry = field(repr=False)

    def stage(self, stage_id: str) -> StageSpec:
        """The stage with this id."""
        for spec in self.stages:
            if spec.id == stage_id:
                return spec
        raise KeyError(stage_id)


# ---------------------------------------------------------------------------------------------
# YAML with line numbers


def _load_yaml_with_lines(text: str, file: str) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML, returning the data and a map from key path to 1-based line number."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise PipelineError([f"{file}:{line}: (yaml): {problem}"]) from None
    finally:
        loader.dispose()
    lines: dict[tuple, int] = {}
    if node is None:
        return {}, lines
    constructor = yaml.SafeLoader("")

    def build(n: yaml.Node, path: tuple) -> Any:
        lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                key = constructor.construct_object(key_node, deep=True)
                lines[path + (key,)] = key_node.start_mark.line + 1
                out[key] = build(value_node, path + (key,))
                lines[path + (key,)] = key_node.start_mark.line + 1
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(item, path + (i,)) for i, item in enumerate(n.value)]
        return constructor.construct_object(n, deep=True)

    return build(node, ()), lines


def apply_overrides(data: dict[str, Any], overrides: list[str], lines: dict[tuple, int]) -> list[str]:
    """Apply ``--set path.to.key=value`` overrides in place; return problems found.

    In ``stages`` a path step may be a stage id (``stages.extract.with.engine=trafilatura``) or an
    index. Values are parsed as YAML scalars (``3`` is an int, ``true`` a bool).
    """
    problems: list[str] = []
    for item in overrides:
        if "=" not in item:
            problems.append(f"--set {item}: expected KEY=VALUE")
            continue
        key, raw = item.split("=", 1)
        steps = key.split(".")
        value = yaml.safe_load(raw) if raw != "" else ""
        node: Any = data
        path: tuple = ()
        ok = True
        for i, step in enumerate(steps):
            last = i == len(steps) - 1
            if isinstance(node, list):
                index = _list_index(node, step)
                if index is None:
                    problems.append(f"--set {key}: no item {step!r} in {'.'.join(steps[:i]) or 'file'}")
                    ok = False
                    break
                path += (index,)
                if last:
                    node[index] = value
                else:
                    node = node[index]
            elif isinstance(node, dict):
                path += (step,)
                if last:
                    node[step] = value
                else:
                    node = node.setdefault(step, {})
            else:
                problems.append(f"--set {key}: {'.'.join(steps[:i])} is not a mapping")
                ok = False
                break
        if ok:
            lines[path] = 0  # 0 marks a value that came from the command line
    return problems


def _list_index(items: list[Any], step: str) -> int | None:
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("id") == step:
            return i
    if step.isdigit() and int(step) < len(items):
        return int(step)
    return None


# ---------------------------------------------------------------------------------------------
# Validation


class _Problems:
    def __init__(self, file: str, lines: dict[tuple, int]) -> None:
        self.file = file
        self.lines = lines
        self.items: list[str] = []

    def add(self, path: tuple, message: str) -> None:
        line = self._line(path)
        key = ".".join(str(p) for p in path) or "(file)"
        where = "--set" if line == 0 else f"{self.file}:{line}"
        self.items.append(f"{where}: {key}: {message}")

    def _line(self, path: tuple) -> int:
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return 1


def load_pipeline(
    file: str,
    overrides: list[str] | None = None,
    run_dir: str | None = None,
    check_output_writable: bool = True,
    input_limit: int | None = None,
) -> Pipeline:
    """Load and validate a pipeline file; raise :class:`PipelineError` listing every mistake.

    ``input_limit`` caps the number of files read from every ``files`` or ``listing`` input.
    """
    try:
        with open(file, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise PipelineError([f"{file}:1: (file): cannot read: {exc.strerror}"]) from None
    data, lines = _load_yaml_with_lines(text, file)
    problems = _Problems(file, lines)
    if not isinstance(data, dict):
        raise PipelineError([f"{file}:1: (file): a pipeline file is a mapping with inputs, stages and outputs"])
    override_problems = apply_overrides(data, overrides or [], lines)
    if override_problems:
        raise PipelineError(override_problems)
    base_dir = os.path.dirname(os.path.abspath(file))

    for key in data:
        if key not in TOP_KEYS:
            problems.add((key,), f"unknown key (expected one of: {', '.join(sorted(TOP_KEYS))})")

    name = data.get("name") or os.path.splitext(os.path.basename(file))[0]
    if not isinstance(name, str):
        problems.add(("name",), "must be a string")
        name = "pipeline"
    default_batch = data.get("batch_rows", DEFAULT_BATCH_ROWS)
    if not isinstance(default_batch, int) or isinstance(default_batch, bool) or default_batch < 1:
        problems.add(("batch_rows",), "must be a positive integer")
        default_batch = DEFAULT_BATCH_ROWS

    imports = data.get("imports") or []
    if isinstance(imports, str):
        imports = [imports]
    registry = StageRegistry()
    try:
        registry = StageRegistry.discover(imports, base_dir)
    except (ImportError, ValueError, SyntaxError) as exc:
        problems.add(("imports",), f"cannot import stages: {exc}")

    inputs = _validate_inputs(data.get("inputs"), base_dir, problems, input_limit)
    declared = _declared_ids(data.get("stages"))
    if isinstance(data.get("inputs"), dict):
        declared |= {str(k) for k in data["inputs"]}
    stages = _validate_stages(data.get("stages"), registry, inputs, problems, default_batch, base_dir)
    order = _topological_order(stages, inputs, problems, declared)
    _check_columns(order, inputs, problems)

    if run_dir is None:
        raw_run_dir = data.get("run_dir")
        run_dir = os.path.join(base_dir, raw_run_dir) if isinstance(raw_run_dir, str) else os.path.join("runs", name)
    run_dir = run_dir if is_remote(run_dir) else os.path.abspath(run_dir)
    if check_output_writable and not _writable(run_dir):
        problems.add(("run_dir",), f"cannot write the run directory {run_dir}")
    outputs = _validate_outputs(data.get("outputs"), stages, declared, base_dir, run_dir, problems,
                                check_output_writable)

    if problems.items:
        raise PipelineError(problems.items)
    return Pipeline(name, os.path.abspath(file), base_dir, run_dir, list(imports), inputs, order, outputs, registry)


def _validate_inputs(raw: Any, base_dir: str, problems: _Problems, input_limit: int | None) -> dict[str, InputSpec]:
    out: dict[str, InputSpec] = {}
    if raw is None:
        return out
    if not isinstance(raw, dict):
        problems.add(("inputs",), "must be a mapping of input names to {files|listing|dataset: ...}")
        return out
    for name, spec in raw.items():
        path = ("inputs", name)
        if isinstance(spec, str):
            spec = {"files": spec}
        if not isinstance(spec, dict):
            problems.add(path, "must be a mapping with one of: files, listing, dataset")
            continue
        for key in spec:
            if key not in INPUT_KEYS:
                problems.add(path + (key,), f"unknown key (expected one of: {', '.join(sorted(INPUT_KEYS))})")
        kinds = [k for k in INPUT_KINDS if k in spec]
        if len(kinds) != 1:
            problems.add(path, "needs exactly one of: files, listing, dataset")
            continue
        kind = kinds[0]
        limit = spec.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            problems.add(path + ("limit",), "must be a positive integer")
            limit = None
        if input_limit is not None and kind != "dataset":
            limit = min(limit or input_limit, input_limit)
        try:
            if kind == "files":
                patterns = spec["files"] if isinstance(spec["files"], list) else [spec["files"]]
                paths = expand_paths([str(p) for p in patterns], base_dir)
                if limit is not None:
                    paths = paths[:limit]
                out[name] = InputSpec(name, "files", [InputFile(p, file_fingerprint(p)) for p in paths])
            elif kind == "listing":
                paths = read_listing(str(spec["listing"]), base_dir, str(spec.get("prefix", "")), limit)
                # Remote listings name thousands of files: fingerprint by path only, no HEAD each.
                out[name] = InputSpec(name, "files", [InputFile(p, p) for p in paths])
            else:
                ds = str(spec["dataset"])
                ds = ds if is_remote(ds) else os.path.join(base_dir, ds)
                shards = list_shards(ds)
                if not shards:
                    raise FileNotFoundError(f"{spec['dataset']} (no part-*.parquet shards in it)")
                if limit is not None:
                    shards = shards[:limit]
                columns = read_schema(shards[0]).names
                out[name] = InputSpec(name, "dataset", [InputFile(p, file_fingerprint(p)) for p in shards], columns)
        except FileNotFoundError as exc:
            problems.add(path + (kind,), f"input path not found: {exc.args[0] if exc.args else exc}")
        except OSError as exc:
            problems.add(path + (kind,), f"cannot read input: {exc}")
    return out


def _validate_stages(
    raw: Any, registry: StageRegistry, inputs: dict[str, InputSpec], problems: _Problems, default_batch: int,
    base_dir: str,
) -> list[StageSpec]:
    out: list[StageSpec] = []
    if not isinstance(raw, list) or not raw:
        problems.add(("stages",), "must be a non-empty list of stages")
        return out
    seen: set[str] = set()
    for i, item in enumerate(raw):
        path: tuple = ("stages", i)
        if not isinstance(item, dict):
            problems.add(path, "each stage is a mapping with id, uses, from, with")
            continue
        stage_id = item.get("id")
        if not isinstance(stage_id, str) or not stage_id:
            problems.add(path, "missing 'id'")
            continue
        if stage_id in seen or stage_id in inputs:
            problems.add(path + ("id",), f"duplicate id {stage_id!r}")
        if "/" in stage_id or stage_id.startswith((".", "_")):
            problems.add(path + ("id",), "ids name folders: no '/' and no leading '.' or '_'")
        seen.add(stage_id)
        for key in item:
            if key not in STAGE_KEYS:
                problems.add(path + (key,), f"unknown key (expected one of: {', '.join(sorted(STAGE_KEYS))})")
        uses = item.get("uses")
        if not isinstance(uses, str) or uses not in registry:
            hint = registry.close_matches(uses) if isinstance(uses, str) else []
            extra = f" (did you mean {', '.join(hint)}?)" if hint else " (see `curator stages`)"
            problems.add(path + ("uses",), f"unknown stage {uses!r}{extra}")
            continue
        cls = registry.get(uses)
        params = item.get("with") or {}
        if not isinstance(params, dict):
            problems.add(path + ("with",), "must be a mapping of parameters")
            continue
        params = resolve_path_params(cls, params, base_dir)
        try:
            stage = cls(**params)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                if err["type"] == "extra_forbidden":
                    allowed = ", ".join(cls.model_fields) or "none"
                    message = f"unknown parameter for {uses} (parameters: {allowed})"
                else:
                    message = f"{err['msg']} (got {err.get('input')!r})"
                problems.add(path + ("with",) + loc, message)
            continue
        upstream = item.get("from")
        if upstream is None:
            problems.add(path, "missing 'from' (an input name or stage id)")
            continue
        upstream_list = upstream if isinstance(upstream, list) else [upstream]
        if not all(isinstance(u, str) for u in upstream_list) or not upstream_list:
            problems.add(path + ("from",), "must be an input name, a stage id, or a list of them")
            continue
        keep_rejected = item.get("keep_rejected", False)
        if not isinstance(keep_rejected, bool):
            problems.add(path + ("keep_rejected",), "must be true or false")
        batch_rows = item.get("batch_rows", default_batch)
        if not isinstance(batch_rows, int) or isinstance(batch_rows, bool) or batch_rows < 1:
            problems.add(path + ("batch_rows",), "must be a positive integer")
            batch_rows = default_batch
        out.append(StageSpec(stage_id, uses, stage, upstream_list, bool(keep_rejected), batch_rows, key_path=path))
    return out


def _declared_ids(raw: Any) -> set[str]:
    """Ids of every stage written in the file, valid or not."""
    if not isinstance(raw, list):
        return set()
    return {item["id"] for item in raw if isinstance(item, dict) and isinstance(item.get("id"), str)}


def _topological_order(stages: list[StageSpec], inputs: dict[str, InputSpec], problems: _Problems,
                       declared: set[str]) -> list[StageSpec]:
    by_id = {s.id: s for s in stages}
    ok = True
    for spec in stages:
        path = spec.key_path
        for up in spec.upstream:
            if up not in by_id and up in declared:
                ok = False  # that stage has its own problem reported already
            elif up not in by_id and up not in inputs:
                problems.add(path + ("from",), f"{up!r} is neither an input nor a stage id")
                ok = False
            elif up in inputs:
                kind = inputs[up].kind
                if spec.kind == "source" and kind != "files":
                    problems.add(path + ("from",), f"{spec.uses} reads files, but input {up!r} is a dataset")
                    ok = False
                if spec.kind != "source" and kind == "files":
                    problems.add(path + ("from",), f"{spec.uses} reads a dataset, but input {up!r} is files: put a reader stage (e.g. io.warc) between them")
                    ok = False
            elif spec.kind == "source":
                problems.add(path + ("from",), f"{spec.uses} reads files; {up!r} is a stage")
                ok = False
    if not ok:
        return stages
    order: list[StageSpec] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(spec: StageSpec, trail: list[str]) -> bool:
        if state.get(spec.id) == 2:
            return True
        if state.get(spec.id) == 1:
            cycle = trail[trail.index(spec.id):] + [spec.id]
            problems.add(spec.key_path + ("from",), f"cycle: {' -> '.join(cycle)}")
            return False
        state[spec.id] = 1
        for up in spec.upstream:
            if up in by_id and not visit(by_id[up], trail + [spec.id]):
                return False
        state[spec.id] = 2
        order.append(spec)
        return True

    for spec in stages:
        if not visit(spec, []):
            return stages
    return order


def _check_columns(order: list[StageSpec], inputs: dict[str, InputSpec], problems: _Problems) -> None:
    available: dict[str, list[str] | None] = {name: spec.columns for name, spec in inputs.items()}
    for spec in order:
        upstream_cols: list[str] | None = []
        for up in spec.upstream:
            cols = available.get(up)
            if cols is None or upstream_cols is None:
                upstream_cols = None
            else:
                upstream_cols += [c for c in cols if c not in upstream_cols]
        if spec.kind == "source":
            upstream_cols = []
        if upstream_cols is not None and not isinstance(spec.stage, SourceStage):
            missing = [c for c in spec.stage.required_columns() if c not in upstream_cols]
            if missing:
                problems.add(spec.key_path + ("from",),
                             f"{spec.uses} needs column(s) {missing}, which {spec.upstream} do not provide")
        spec.columns = None if upstream_cols is None else spec.stage.output_columns(upstream_cols)
        available[spec.id] = spec.columns


def _validate_outputs(
    raw: Any, stages: list[StageSpec], declared: set[str], base_dir: str, run_dir: str, problems: _Problems,
    check_writable: bool,
) -> list[OutputSpec]:
    out: list[OutputSpec] = []
    if raw is None:
        return out
    if not isinstance(raw, dict):
        problems.add(("outputs",), "must be a mapping of output names to {from: stage, path: dir}")
        return out
    ids = {s.id for s in stages}
    for name, spec in raw.items():
        path = ("outputs", name)
        if isinstance(spec, str):
            spec = {"from": spec}
        if not isinstance(spec, dict):
            problems.add(path, "must be a mapping with 'from' and optionally 'path'")
            continue
        for key in spec:
            if key not in OUTPUT_KEYS:
                problems.add(path + (key,), "unknown key (expected: from, path)")
        source = spec.get("from")
        if source not in ids:
            if source not in declared:  # else that stage's own problem is reported already
                problems.add(path + ("from",), f"{source!r} is not a stage id")
            continue
        dest = spec.get("path")
        if dest is None:
            dest_path = f"{run_dir}/outputs/{name}"
        else:
            dest_path = str(dest) if is_remote(str(dest)) else os.path.abspath(os.path.join(base_dir, str(dest)))
        if check_writable and not _writable(dest_path):
            problems.add(path + ("path",), f"cannot write output directory {dest_path}")
        out.append(OutputSpec(str(name), source, dest_path))
    return out


def _writable(path: str) -> bool:
    """Whether a local directory exists and is writable, or could be created; remote: assumed."""
    if is_remote(path):
        return True
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return False
        probe = parent
    return os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK)


def resolve_path_params(cls: type[BaseModel], params: dict[str, Any], base_dir: str) -> dict[str, Any]:
    """``params`` with every relative :data:`~curator.stage.PathParam` resolved against ``base_dir``,
    also inside nested settings (``llm: {model_path: ...}``)."""
    out = dict(params)
    def resolved(value: Any) -> Any:
        if isinstance(value, str) and value and not os.path.isabs(value) and not is_remote(value):
            return os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))
        return value

    for name in path_params(cls):
        if name in out:
            value = out[name]
            out[name] = [resolved(v) for v in value] if isinstance(value, list) else resolved(value)
    for name, model_cls in nested_models(cls).items():
        if isinstance(out.get(name), dict):
            out[name] = resolve_path_params(model_cls, out[name], base_dir)
    return out
