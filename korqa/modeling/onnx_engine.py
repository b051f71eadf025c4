"""Read with ONNX Runtime: korqa's BERT, traced once to ONNX, run by ORT's CPU kernels.

Why a second engine for the same model: PyTorch dispatches many small kernels (GELU, layer
norm, adds, copies) one by one; ONNX Runtime's transformer optimiser fuses them into BiasGelu,
SkipLayerNormalization and Attention, and its MLAS GEMMs (and u8×s8 int8 kernels) are faster on
AVX2 (measured in `models/korqa-reader/MODEL_CARD.md`). The model stays ours:
`korqa.modeling.bert` defines it and trains it; this module only traces its eval-mode forward
pass, so both engines compute the same function (checked in the tests). This is korqa's one
int8 path.

The traced graph is built on first use and cached under `korqa.paths.cache_dir()/onnx`, keyed
by the model's files and the export settings, so later loads take a second. Reading needs only
numpy and onnxruntime: torch is imported to trace the graph on a cache miss, never to read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from korqa.memory import return_freed_memory
from korqa.modeling.config import (
    ABSMAX_FILE,
    CONFIG_FILE,
    DEFAULT_ALPHA,
    SAFETENSORS_FILE,
    BertConfig,
)

if TYPE_CHECKING:
    from torch import nn

ONNX_OPSET = 17
_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
# The files a traced reader depends on; the cache key hashes them (the calibration: int8 only).
_KEY_FILES = (CONFIG_FILE, SAFETENSORS_FILE)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_onnx(model: nn.Module, path: str | Path) -> Path:
    """Trace `model` (a float BertForQuestionAnswering) to an ONNX file taking input_ids,
    token_type_ids and attention_mask of any [batch, length], returning start and end logits."""
    import torch

    class _LogitsOnly(torch.nn.Module):
        """(start_logits, end_logits) of a BertForQuestionAnswering, the two outputs ORT
        returns."""

        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                    attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            start, end = self.model(input_ids, token_type_ids, attention_mask)[:2]
            return start, end

    path = Path(path)
    model = model.eval()
    example = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones_like(example)
    mask[1, 6:] = 0  # a padded row, so the traced graph keeps the attention mask
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notices about Python control flow
        torch.onnx.export(
            _LogitsOnly(model), (example, torch.zeros_like(example), mask), str(path),
            input_names=list(_INPUTS), output_names=["start_logits", "end_logits"],
            dynamic_axes={name: {0: "batch", 1: "length"}
                          for name in (*_INPUTS, "start_logits", "end_logits")},
            opset_version=ONNX_OPSET, dynamo=False)
    return path


def optimize_onnx(path: str | Path, config: BertConfig) -> None:
    """Fuse attention, bias+GELU and residual+layer-norm (ORT's BERT optimiser), in place."""
    from onnxruntime.transformers import optimizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimized = optimizer.optimize_model(
            str(path), model_type="bert", num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size, opt_level=1)
        optimized.save_model_to_file(str(path))


class OnnxEngine:
    """A `korqa.modeling.engines.ReaderEngine` on an ONNX Runtime session (CPU only); it
    holds no torch objects."""

    name = "onnx"

    def __init__(self, path: str | Path, config: BertConfig, threads: int | None = None,
                 int8: bool = False) -> None:
        self.config = config
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        # ORT's threads busy-wait for work between kernels, which saves a wake-up per kernel,
        # and by default go on spinning after a run, starving what comes between a chatbot's
        # reads (retrieval, tokenisation). So they spin within a run and stop at its end.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.force_spinning_stop", "1")
        # Within a run the arena reuses activation buffers, where plain malloc maps and
        # unmaps each large one anew (a batch of 32 windows: a million page faults, seconds of
        # system time); shrinking it at the end of every run gives the memory back, so a
        # server reading one window at a time holds no batch's activations (README, Measured).
        options.enable_cpu_mem_arena = True
        self._run_options = ort.RunOptions()
        self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.path = Path(path)
        self.is_int8 = int8
        # Dynamic int8 quantises a batch's activations with one scale, so a window's logits
        # would depend on the windows batched with it: int8 reads one window at a time.
        self.max_batch = 1 if int8 else None
        self.max_length = int(config.max_position_embeddings)
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        return_freed_memory()  # the graph's protobuf, parsed and dropped, would stay held
        self.input_names = [item.name for item in self.session.get_inputs()]

    def forward(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits [batch, length] of int64 input_ids, token_type_ids and
        attention_mask arrays (the last two default to zeros and ones)."""
        ids = batch["input_ids"]
        given = {"input_ids": ids,
                 "token_type_ids": batch.get("token_type_ids", np.zeros_like(ids)),
                 "attention_mask": batch.get("attention_mask", np.ones_like(ids))}
        feed = {name: np.asarray(given[name], dtype=np.int64) for name in self.input_names}
        start, end = self.session.run(None, feed, self._run_options)
        return start, end


_THREADS: int | None = None


def set_default_threads(threads: int | None) -> None:
    """The intra-op threads of sessions made from now on (`korqa serve --threads`)."""
    global _THREADS
    _THREADS = threads


def default_threads() -> int:
    """`set_default_threads`'s count; else torch's when torch is loaded (it may have been set
    there); else 0, ONNX Runtime's own default (one per physical core, as torch's is)."""
    if _THREADS:
        return _THREADS
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else 0


def cache_key(directory: str | Path, settings: dict) -> str:
    """A name for the traced graph: the model's files, the export settings, the versions."""
    import onnxruntime as ort

    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(f"torch {_torch_version()} ort {ort.__version__}".encode())
    for name in (*_KEY_FILES, *([ABSMAX_FILE] if settings.get("int8") else [])):
        file = Path(directory) / name
        if file.is_file():
            digest.update(name.encode())
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:20]


def _torch_version() -> str:
    """torch's version without importing torch (what `torch.__version__` says)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return str(torch.__version__)
    from importlib.metadata import version

    return version("torch")


def build_onnx_engine(directory: str | Path, int8: bool = False,
                      cache: str | Path | None = None,
                      threads: int | None = None) -> OnnxEngine:
    """The reader in `directory` as an `OnnxEngine`, exported on first use and cached
    (under `cache`, default `korqa.paths.cache_dir()/onnx`).

    int8: every linear layer becomes an ORT dynamic int8 MatMul (weights per output channel)
    after SmoothQuant smoothing from the calibration beside the model (`korqa calibrate`):
    the attention output linears through the value projection (exact, no extra op), the FFN
    and QA-head linears through a Mul on their input. The query/key/value linears read layer
    norm outputs, which quantise well unsmoothed, and leaving them alone lets ORT fuse each
    layer's attention (QAttention)."""
    from korqa.paths import cache_dir

    if not onnxruntime_available():
        raise RuntimeError("the onnx engine needs onnxruntime: pip install onnxruntime")
    if int8 and not (Path(directory) / ABSMAX_FILE).is_file():
        raise ValueError(f"{directory}: no {ABSMAX_FILE}; run `korqa calibrate --model "
                         f"{directory} --data TRAIN.json` to read it with int8")
    config = BertConfig.from_json_file(Path(directory) / CONFIG_FILE)
    settings = {"opset": ONNX_OPSET, "int8": int8, "alpha": DEFAULT_ALPHA, "format": 2}
    folder = Path(cache) if cache is not None else cache_dir() / "onnx"
    target = folder / f"{cache_key(directory, settings)}.onnx"
    if not target.is_file():
        print(f"korqa: tracing {directory} for ONNX Runtime{' (int8)' if int8 else ''}, once; "
              f"cached in {folder}", file=sys.stderr)
        folder.mkdir(parents=True, exist_ok=True)
        _trace(directory, int8, config, folder, target)
    return OnnxEngine(target, config, threads, int8)


def _trace(directory: str | Path, int8: bool, config: BertConfig, folder: Path,
           target: Path) -> None:
    """Export, optimise (and with int8 quantise) the reader; the one step that needs torch."""
    from korqa.modeling.bert import BertForQuestionAnswering
    from korqa.modeling.checkpoint import load_model
    from korqa.modeling.quantize import (
        fold_attention_output_smoothing,
        linear_names,
        load_input_absmax,
        smooth_linears,
    )

    model = load_model(BertForQuestionAnswering, directory).eval()
    if int8:
        absmax = load_input_absmax(directory)
        folded = fold_attention_output_smoothing(model, absmax, DEFAULT_ALPHA)
        rest = [name for name in linear_names(model) if name not in folded
                and not name.endswith(("query", "key", "value"))]
        smooth_linears(model, absmax, DEFAULT_ALPHA, rest)
    # Built in a scratch folder and renamed into place: a crash leaves no half file.
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        staged = Path(scratch) / "model.onnx"
        export_onnx(model, staged)
        optimize_onnx(staged, config)
        if int8:
            _quantize_onnx(staged)
        keep_word_embeddings_int8(staged, Path(directory) / SAFETENSORS_FILE)
        os.replace(staged, target)


WORD_EMBEDDINGS = "bert.embeddings.word_embeddings.weight"


def keep_word_embeddings_int8(path: Path, weights: Path) -> bool:
    """Hold the word-embedding table in the graph as the weights file stores it (int8 rows and
    their fp16 block scales), scaling only the rows a window gathers; False if it cannot.

    The table is most of the reader's float weights but a window reads a few hundred of its
    rows, so ORT holds a quarter of its bytes. The values are the same: Cast and Mul compute
    the product `checkpoint.dequantize` computed, which is checked before the graph changes.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from safetensors import safe_open

    from korqa.modeling.checkpoint import dequantize  # torch: tracing has loaded it already

    if not weights.is_file():
        return False
    with safe_open(weights, "pt") as handle:
        if f"{WORD_EMBEDDINGS}.qweight" not in handle.keys():
            return False  # a float weights file: nothing smaller to keep
        qweight = handle.get_tensor(f"{WORD_EMBEDDINGS}.qweight")
        qscale = handle.get_tensor(f"{WORD_EMBEDDINGS}.qscale")
    table = dequantize(qweight, qscale).numpy()
    qweight, qscale = qweight.numpy(), qscale.numpy()
    rows, width = qweight.shape
    blocks = qscale.shape[1]
    model = onnx.load(str(path))
    graph = model.graph
    initializer = next((t for t in graph.initializer if tuple(t.dims) == (rows, width)
                        and t.data_type == TensorProto.FLOAT
                        and np.array_equal(numpy_helper.to_array(t), table)), None)
    gathers = [n for n in graph.node if initializer is not None and n.op_type == "Gather"
               and n.input[0] == initializer.name]
    if initializer is None or len(gathers) != 1 or any(
            a.name == "axis" and a.i != 0 for a in gathers[0].attribute):
        return False
    gather = gathers[0]
    name = initializer.name
    ids, out = gather.input[1], gather.output[0]
    graph.initializer.remove(initializer)
    graph.initializer.extend([
        numpy_helper.from_array(qweight, f"{name}.qweight"),
        numpy_helper.from_array(qscale, f"{name}.qscale"),
        numpy_helper.from_array(np.array([0, 0, blocks, width // blocks], np.int64),
                                f"{name}.blocked"),
        numpy_helper.from_array(np.array([0, 0, width], np.int64), f"{name}.rows"),
        numpy_helper.from_array(np.array([-1], np.int64), f"{name}.last_axis")])
    nodes = [
        helper.make_node("Gather", [f"{name}.qweight", ids], [f"{name}.q"]),
        helper.make_node("Cast", [f"{name}.q"], [f"{name}.qf"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", [f"{name}.qf", f"{name}.blocked"], [f"{name}.qb"]),
        helper.make_node("Gather", [f"{name}.qscale", ids], [f"{name}.s"]),
        helper.make_node("Cast", [f"{name}.s"], [f"{name}.sf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", [f"{name}.sf", f"{name}.last_axis"], [f"{name}.sb"]),
        helper.make_node("Mul", [f"{name}.qb", f"{name}.sb"], [f"{name}.scaled"]),
        helper.make_node("Reshape", [f"{name}.scaled", f"{name}.rows"], [out])]
    position = list(graph.node).index(gather)
    graph.node.remove(gather)
    for offset, node in enumerate(nodes):
        graph.node.insert(position + offset, node)
    onnx.save(model, str(path))
    return True


def _quantize_onnx(path: Path) -> None:
    """Dynamic int8 weights (per output channel) for every MatMul and fused attention."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_suffix(".int8.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs advice about static quantisation
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(path), str(quantized), per_channel=True,
                             weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)
    os.replace(quantized, path)
