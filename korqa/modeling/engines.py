"""What runs a reader's (or a retriever encoder's) forward pass: one small protocol each, two
engines, one place that picks.

PyTorch runs korqa's BERT as it is (float; CPU or GPU). ONNX Runtime runs the same model as an
ONNX graph (`korqa.modeling.onnx_engine`; CPU only), in float or in int8: int8 has this one
path. `korqa ask` on the CPU reads with ONNX Runtime, and importing torch for that would cost
more time than the whole answer (and the base install has no torch), so this module imports
torch only where a torch engine is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch

ENGINES = ("auto", "torch", "onnx")


@dataclass
class EngineChoice:
    """What runs a reader, and where: the arguments of `load_engine` (and `ReaderDir.load`)."""

    # The "help" metadata is each knob's command-line help (korqa.cli_options).
    engine: Literal["auto", "torch", "onnx"] = field(default="auto", metadata={
        "help": "what runs the reader: torch (needs the torch extra), onnx (the same model "
                "as an ONNX graph in ONNX Runtime, CPU only: same answers, faster), or auto "
                "(default: onnx on the CPU)"})
    int8: bool = field(default=False, metadata={
        "help": "read with ONNX Runtime's int8 (smoothed int8 linear layers, CPU only): "
                "faster, slightly less accurate (the model must ship the calibration `korqa "
                "calibrate` writes)"})
    device: str = field(default="cpu", metadata={
        "help": "where the torch engine reads: cpu, cuda, cuda:1, ... (a GPU needs the torch "
                "extra)"})


@runtime_checkable
class ReaderEngine(Protocol):
    """A reader's forward pass: `pad_batch` arrays in, start and end logits [B, L] out."""

    name: str  # "torch" or "onnx"
    is_int8: bool  # reads with int8 matrix products
    max_batch: int | None  # the most windows one forward call may hold; None: any
    max_length: int  # the longest window, in tokens (the model's position embeddings)

    def forward(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]: ...


class TorchEngine:
    """korqa's PyTorch BERT (float), on the device its weights are on."""

    name = "torch"
    is_int8 = False
    max_batch = None

    def __init__(self, model: torch.nn.Module, device: str | torch.device | None = None) -> None:
        self.model = model
        if device is None:
            weight = next(model.parameters(), None)
            device = weight.device if weight is not None else "cpu"
        self.device = device

    @property
    def max_length(self) -> int:
        return int(self.model.config.max_position_embeddings)

    def forward(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Logits under inference mode, in eval mode for the call: a model met while training
        (validation) is put back in training mode after it."""
        import torch

        # Toggling modes walks every submodule: only done when needed.
        was_training = self.model.training
        if was_training:
            self.model.eval()
        try:
            with torch.inference_mode():
                tensors = {name: torch.from_numpy(array).to(self.device)
                           for name, array in batch.items()}
                start, end = self.model(**tensors)[:2]
                return start.float().cpu().numpy(), end.float().cpu().numpy()
        finally:
            if was_training:
                self.model.train()


def resolve_engine(engine: str, device: str = "cpu", int8: bool = False) -> str:
    """"torch" or "onnx": auto picks ONNX Runtime on the CPU when it is installed. int8 reads
    with ONNX Runtime only."""
    from korqa.modeling.onnx_engine import onnxruntime_available

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    on_cpu = device == "cpu"
    if engine == "onnx" and not on_cpu:
        raise ValueError(f"the onnx engine reads on the CPU only, not on {device}; "
                         "use --engine torch")
    if engine == "auto":
        engine = "onnx" if on_cpu and onnxruntime_available() else "torch"
    if int8 and engine == "torch":
        raise ValueError("int8 reading runs on ONNX Runtime only: use --engine onnx (on the "
                         "CPU, with onnxruntime installed), or read in float without --int8")
    return engine


def load_engine(directory: str | Path, engine: str = "auto", int8: bool = False,
                device: str = "cpu") -> ReaderEngine:
    """The reader in `directory` behind `engine` ("torch", "onnx" or "auto", see
    `resolve_engine`). int8 needs the calibration `korqa calibrate` writes beside the model."""
    if resolve_engine(engine, device, int8) == "onnx":
        from korqa.modeling.onnx_engine import build_onnx_engine

        return build_onnx_engine(directory, int8)
    from korqa.modeling.bert import BertForQuestionAnswering
    from korqa.modeling.checkpoint import load_model

    model = load_model(BertForQuestionAnswering, directory).eval().to(device)
    return TorchEngine(model, device)


@runtime_checkable
class EncoderEngine(Protocol):
    """A retriever encoder's forward pass: input_ids and attention_mask [B, L] in, e5's
    vectors out (the last layer mean-pooled over the mask, L2-normalised) [B, hidden]."""

    name: str

    def embed(self, batch: dict[str, np.ndarray]) -> np.ndarray: ...


class TorchEncoder:
    """korqa's PyTorch BertModel as an `EncoderEngine`, for GPUs (`korqa index --ray` workers
    with one, bench/dense_kowiki_device.py); the ONNX graph's "embeddings" head computes the
    same pooling on the CPU."""

    name = "torch"

    def __init__(self, directory: str | Path, device: str = "cpu") -> None:
        from korqa.modeling.bert import BertModel
        from korqa.modeling.checkpoint import load_model

        self.device = device
        self.model = load_model(BertModel, directory).to(device).eval()

    def embed(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            ids = torch.from_numpy(batch["input_ids"]).to(self.device)
            mask = torch.from_numpy(batch["attention_mask"]).to(self.device)
            layers, _ = self.model(ids, attention_mask=mask, output_all_encoded_layers=False)
            hidden = layers[-1].float()
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
            return torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()


def load_encoder(directory: str | Path, device: str = "cpu") -> EncoderEngine:
    """The retriever encoder in `directory`: ONNX Runtime on the CPU, PyTorch elsewhere."""
    if device == "cpu":
        from korqa.modeling.onnx_engine import OnnxEngine

        return OnnxEngine(directory, head="embeddings")
    return TorchEncoder(directory, device)


def as_engine(model: ReaderEngine | torch.nn.Module,
              device: str | torch.device | None = None) -> ReaderEngine:
    """`model` itself when it is an engine; a bare torch module (a model being trained or
    probed) wrapped in a `TorchEngine` reading on `device` (default: its weights')."""
    if isinstance(model, TorchEngine | ReaderEngine):
        return model
    return TorchEngine(model, device)
