"""Read with ONNX Runtime: korqa's BERT as an ONNX graph (`korqa.modeling.onnx_graph`), run by
ORT's CPU kernels.

Why a second engine for the same model: PyTorch dispatches many small kernels (GELU, layer
norm, adds, copies) one by one; the graph uses ONNX Runtime's fused Attention,
SkipLayerNormalization and BiasGelu, and its MLAS GEMMs (and u8×s8 int8 kernels) are faster on
AVX2 (measured in `models/korqa-reader/MODEL_CARD.md`). The model stays ours:
`korqa.modeling.bert` defines it and trains it, and the graph computes the same function
(checked in the tests). This is korqa's one int8 path, and reading needs neither torch nor a
trace: a model directory ships its graph as model.onnx (its weights stay in model.safetensors),
and a directory without one (a reader fresh from training) gets the same graph built in memory
in well under a second.

Float reading runs that graph as it is. int8 reading (`--int8`) derives a second graph once,
with numpy and ONNX Runtime's quantiser, and caches it under `korqa.paths.cache_dir()/onnx`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

from korqa.memory import return_freed_memory
from korqa.modeling.config import (
    ABSMAX_FILE,
    CONFIG_FILE,
    DEFAULT_ALPHA,
    ONNX_FILE,
    SAFETENSORS_FILE,
    BertConfig,
)

# Session config entries. With QDQ transformations off, ORT's constant folding folds the
# graph's DequantizeLinear nodes (int8 weights → float) at load instead of keeping them, which
# would dequantise every weight on every run.
_FOLD_DEQUANTIZE = ("session.disable_quant_qdq", "1")
_EXTERNAL_DATA_FOLDER = "session.model_external_initializers_file_folder_path"


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def session_options(threads: int | None = None) -> object:
    """korqa's ONNX Runtime session options (an `onnxruntime.SessionOptions`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    # ORT's threads busy-wait for work between kernels, which saves a wake-up per kernel,
    # and by default go on spinning after a run, starving what comes between a chatbot's
    # reads (retrieval, tokenisation). So they spin within a run and stop at its end.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    options.add_session_config_entry(*_FOLD_DEQUANTIZE)
    # Within a run the arena reuses activation buffers, where plain malloc maps and unmaps
    # each large one anew (a batch of 32 windows: a million page faults, seconds of system
    # time); `RUN_OPTIONS` shrink it at the end of every run, so a server reading one window
    # at a time holds no batch's activations (README, Measured).
    options.enable_cpu_mem_arena = True
    return options


def run_options() -> object:
    """The options of every run: the arena handed back once the run ends."""
    import onnxruntime as ort

    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def open_session(directory: str | Path, threads: int | None = None,
                 graph: str | Path | None = None, head: str | None = None) -> object:
    """An ONNX Runtime session of the model in `directory`: `graph` if given, else its
    model.onnx when that was built from the files beside it (with `head`, default the
    directory's own), else the same graph built now in memory (`onnx_graph.directory_graph`)."""
    return _create(*session_source(directory, threads, graph, head))


def session_source(directory: str | Path, threads: int | None = None,
                   graph: str | Path | None = None, head: str | None = None,
                   ) -> tuple[str | bytes, object]:
    """What `open_session` hands ONNX Runtime: the graph (a file, or the bytes of one built
    in memory) and the session options."""
    from korqa.modeling.onnx_graph import expected_metadata, graph_metadata

    directory = Path(directory)
    options = session_options(threads)
    shipped = Path(graph) if graph is not None else directory / ONNX_FILE
    # A model.onnx written before its weights or config changed points at bytes that no
    # longer hold what it expects: it is used only while its fingerprints match.
    if graph is not None or (shipped.is_file() and graph_metadata(shipped).items()
                             >= expected_metadata(directory, head).items()):
        return str(shipped), options
    from korqa.modeling.onnx_graph import directory_graph

    options.add_session_config_entry(_EXTERNAL_DATA_FOLDER, str(directory.resolve()))
    return directory_graph(directory, head).SerializeToString(), options


def _create(source: str | bytes, options: object) -> object:
    import onnxruntime as ort

    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return_freed_memory()  # the graph's protobuf and the int8 weights, folded and dropped
    return session


class OnnxEngine:
    """A `korqa.modeling.engines.ReaderEngine` (and `EncoderEngine`, with the "embeddings"
    head) on an ONNX Runtime session (CPU only); it holds no torch objects. `graph`: a graph
    file to read with instead of the directory's own (the cached int8 one)."""

    name = "onnx"

    def __init__(self, directory: str | Path, threads: int | None = None, int8: bool = False,
                 graph: str | Path | None = None, head: str | None = None) -> None:
        self.directory = Path(directory)
        self.config = BertConfig.from_json_file(self.directory / CONFIG_FILE)
        self.is_int8 = int8
        # Dynamic int8 quantises a batch's activations with one scale, so a window's logits
        # would depend on the windows batched with it: int8 reads one window at a time.
        self.max_batch = 1 if int8 else None
        self.max_length = int(self.config.max_position_embeddings)
        self.path = Path(graph) if graph is not None else self.directory / ONNX_FILE
        # ONNX Runtime loads the graph (folding its weights, packing them) without holding
        # the GIL, so it loads on a thread while the caller goes on: a `korqa ask` builds
        # Kiwi meanwhile, which holds the GIL. The first use waits for it.
        source, options = session_source(self.directory, threads, graph, head)
        self._session: object = None
        self._run_options = run_options()
        self._failure: BaseException | None = None
        self._loading = threading.Thread(target=self._load, args=(source, options),
                                         name="korqa-onnx-load", daemon=True)
        self._loading.start()

    def _load(self, source: str | bytes, options: object) -> None:
        try:
            self._session = _create(source, options)
        except BaseException as failure:  # noqa: BLE001 - raised again by `session`
            self._failure = failure

    @property
    def session(self) -> object:
        """The ONNX Runtime session, once loaded (an error loading it is raised here)."""
        if self._loading.is_alive():
            self._loading.join()
        if self._failure is not None:
            raise self._failure
        return self._session

    def run(self, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's outputs for int64 input_ids, token_type_ids and attention_mask arrays
        (the last two default to zeros and ones)."""
        ids = batch["input_ids"]
        given = {"input_ids": ids,
                 "token_type_ids": batch.get("token_type_ids", np.zeros_like(ids)),
                 "attention_mask": batch.get("attention_mask", np.ones_like(ids))}
        session = self.session
        feed = {item.name: np.asarray(given[item.name], dtype=np.int64)
                for item in session.get_inputs()}  # type: ignore[attr-defined]
        return session.run(None, feed, self._run_options)  # type: ignore[attr-defined]

    def forward(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits [batch, length] (`run`)."""
        start, end = self.run(batch)
        return start, end

    def embed(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """The "embeddings" head's L2-normalised vectors [batch, hidden] (`run`)."""
        (vectors,) = self.run(batch)
        return vectors


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
    """A name for a derived graph: the model's files, the settings, ONNX Runtime's version."""
    import json

    import onnxruntime as ort

    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(f"ort {ort.__version__}".encode())
    for name in (CONFIG_FILE, SAFETENSORS_FILE, ABSMAX_FILE):
        file = Path(directory) / name
        if file.is_file():
            digest.update(name.encode())
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:20]


def build_onnx_engine(directory: str | Path, int8: bool = False,
                      cache: str | Path | None = None,
                      threads: int | None = None) -> OnnxEngine:
    """The reader in `directory` as an `OnnxEngine`. int8: the graph `int8_graph` derives,
    made on first use and cached (under `cache`, default `korqa.paths.cache_dir()/onnx`)."""
    from korqa.paths import cache_dir

    if not onnxruntime_available():
        raise RuntimeError("the onnx engine needs onnxruntime: pip install onnxruntime")
    if not int8:
        return OnnxEngine(directory, threads)
    if not (Path(directory) / ABSMAX_FILE).is_file():
        raise ValueError(f"{directory}: no {ABSMAX_FILE}; run `korqa calibrate --model "
                         f"{directory} --data TRAIN.json` to read it with int8")
    settings = {"int8": True, "alpha": DEFAULT_ALPHA, "format": 3}
    folder = Path(cache) if cache is not None else cache_dir() / "onnx"
    target = folder / f"{cache_key(directory, settings)}.onnx"
    if not target.is_file():
        print(f"korqa: deriving the int8 graph of {directory}, once; cached in {folder}",
              file=sys.stderr)
        folder.mkdir(parents=True, exist_ok=True)
        # Built in a scratch folder and renamed into place: a crash leaves no half file.
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            staged = Path(scratch) / "model.onnx"
            int8_graph(directory, staged)
            os.replace(staged, target)
    return OnnxEngine(directory, threads, int8=True, graph=target)


def int8_graph(directory: str | Path, out: Path) -> Path:
    """Write the reader's int8 graph to `out`: its float weights smoothed with the calibration
    beside it (`korqa.modeling.quantize.smooth_for_int8`), then every MatMul and fused
    attention quantised by ONNX Runtime's dynamic int8 (weights per output channel; the
    embedding tables per tensor)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from korqa.modeling.onnx_graph import ArrayWeights, bert_graph
    from korqa.modeling.quantize import load_input_absmax, smooth_for_int8
    from korqa.modeling.weights import read_float_weights

    directory = Path(directory)
    config = BertConfig.from_json_file(directory / CONFIG_FILE)
    state = {key.removeprefix("bert."): value for key, value in
             read_float_weights(directory / SAFETENSORS_FILE).items()}
    state, input_scales = smooth_for_int8(state, load_input_absmax(directory) or {},
                                          config.num_hidden_layers)
    float_graph = out.with_suffix(".float.onnx")
    onnx.save_model(bert_graph(config, ArrayWeights(state), "qa", input_scales),
                    str(float_graph))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs advice about static quantisation
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(float_graph), str(out), per_channel=True,
                             weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)
        float_graph.unlink(missing_ok=True)
    return out
