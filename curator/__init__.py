"""The curator framework: datasets, stages, pipeline files, the Dask runner, reports, the CLI."""

from curator.stage import (
    DROP_REASON,
    BatchResult,
    GlobalStage,
    MapStage,
    Resources,
    ShardStats,
    SourceStage,
    Stage,
)

__all__ = [
    "DROP_REASON", "BatchResult", "GlobalStage", "MapStage", "Resources", "ShardStats", "SourceStage", "Stage",
]
__version__ = "0.1.0"
