"""The stages this package registers (entry point ``curator.stages``)."""

from curator.stage import Stage

STAGES: tuple[type[Stage], ...] = ()
