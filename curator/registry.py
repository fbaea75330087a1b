"""Finding stage classes by their registered names.

Packages announce their stages through the ``curator.stages`` entry-point group (each entry
point names a sequence of Stage classes). A pipeline file may add its own with ``imports:``:
dotted module names or ``.py`` files, whose Stage subclasses with a ``name`` are registered.
Nothing is registered by import side effects, so there is no global registry to keep in sync.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from types import ModuleType

from curator.stage import GlobalStage, MapStage, SourceStage, Stage

ENTRY_POINT_GROUP = "curator.stages"
_BASES = (Stage, SourceStage, MapStage, GlobalStage)


class StageRegistry:
    """A mapping of registered names to stage classes."""

    def __init__(self, classes: Iterable[type[Stage]] = ()) -> None:
        self._classes: dict[str, type[Stage]] = {}
        for cls in classes:
            self.add(cls)

    def add(self, cls: type[Stage]) -> None:
        """Register a stage class under its ``name``; two classes may not share one name."""
        if not cls.name:
            raise ValueError(f"{cls.__module__}.{cls.__qualname__} has no registered name")
        existing = self._classes.get(cls.name)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"stage name {cls.name!r} is registered twice: "
                f"{existing.__module__}.{existing.__qualname__} and {cls.__module__}.{cls.__qualname__}"
            )
        self._classes[cls.name] = cls

    def get(self, name: str) -> type[Stage]:
        """The class registered under ``name``; KeyError if none."""
        return self._classes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._classes)

    def close_matches(self, name: str) -> list[str]:
        """Registered names that look like ``name`` (for 'did you mean' hints)."""
        import difflib

        return difflib.get_close_matches(name, self.names(), n=3, cutoff=0.6)

    @classmethod
    def discover(cls, imports: Iterable[str] = (), base_dir: str = ".") -> StageRegistry:
        """Build a registry from the installed entry points plus ``imports``."""
        registry = cls()
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            for stage_cls in ep.load():
                registry.add(stage_cls)
        for spec in imports:
            for stage_cls in stage_classes_in(import_module_or_file(spec, base_dir)):
                registry.add(stage_cls)
        return registry


def import_module_or_file(spec: str, base_dir: str) -> ModuleType:
    """Import a dotted module name, or a ``.py`` file (relative to ``base_dir``)."""
    if not spec.endswith(".py"):
        return importlib.import_module(spec)
    path = os.path.abspath(os.path.join(base_dir, spec))
    if not os.path.isfile(path):
        raise ModuleNotFoundError(f"no such file: {path}")
    # A stable name per file, so the same file imported twice (client and worker) is one module.
    mod_name = "curator_user_" + hashlib.sha1(path.encode()).hexdigest()[:12]
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec_obj = importlib.util.spec_from_file_location(mod_name, path)
    assert spec_obj is not None and spec_obj.loader is not None
    module = importlib.util.module_from_spec(spec_obj)
    sys.modules[mod_name] = module
    spec_obj.loader.exec_module(module)
    return module


def stage_classes_in(module: ModuleType) -> list[type[Stage]]:
    """Stage subclasses with a registered name defined in a module."""
    return [
        obj for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, Stage) and obj not in _BASES and obj.name and obj.__module__ == module.__name__
    ]
