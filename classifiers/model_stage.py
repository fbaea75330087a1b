"""The base of the stages that score text with a local checkpoint: on a GPU through our Triton kernels, on the
CPU through PyTorch (``classify.encoder``, ``classify.perplexity``)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr

from curator.stage import MapStage, Resources


class ModelScoringStage(MapStage):
    """Device, precision, kernel and batch settings, the GPU request, and a scorer loaded once per worker."""

    resources: ClassVar[Resources] = Resources(gpus=1)
    unpicklable: ClassVar[tuple[str, ...]] = ("_scorer",)

    batch_tokens: int = Field(16384, ge=64, description=(
        "Padded tokens per forward pass (sequences are sorted by length and batched under this budget)."))
    device: str = Field("auto", description="auto (cuda if visible, else cpu), cpu, cuda, cuda:N.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on GPU, float32 on CPU.")
    backend: Literal["auto", "triton", "torch"] = Field(
        "auto", description="auto: our Triton kernels on GPU, PyTorch on CPU.")

    _scorer: Any = PrivateAttr(default=None)

    def task_resources(self) -> Resources:
        """A GPU per task, unless the stage is pinned to the CPU (``device: cpu``)."""
        return Resources(gpus=0) if self.device == "cpu" else self.resources
