"""korqa's BERT written out as an ONNX graph for ONNX Runtime, by hand: no tracing, no torch.

The graph is the one ONNX Runtime's transformer optimiser used to make of the traced model:
its fused contrib ops Attention (query, key and value packed into one matrix, the mask as each
row's length), SkipLayerNormalization (residual + bias + layer norm) and BiasGelu (FastGelu for
the tanh GELU), with matrix products between them, under one of two heads:
- "qa": start and end logits [batch, length] (`BertForQuestionAnswering`);
- "embeddings": the last layer mean-pooled over the mask and L2-normalised [batch, hidden],
  the e5 vectors dense retrieval compares (`BertModel`).

Where the weights come from is a `GraphWeights`:
- `StoredWeights` leaves them in the directory's model.safetensors: every initializer is ONNX
  external data naming that file and the byte range of its tensor, so the graph file itself
  holds no weight. korqa's int8 blocks (`K.qweight` int8, `K.qscale` fp16, one scale per 32
  columns) go through opset 21's blocked DequantizeLinear, which ONNX Runtime folds into float
  weights once, when the session loads (`korqa.modeling.onnx_engine` turns on that folding).
  The word-embedding table is the exception: its int8 rows are gathered first and only the
  gathered rows are scaled, so it stays int8 in memory too.
- `ArrayWeights` holds float arrays inline: the graph that int8 quantisation starts from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from korqa.modeling.config import CONFIG_FILE, ONNX_FILE, SAFETENSORS_FILE, BertConfig
from korqa.modeling.weights import QSCALE, QWEIGHT, WeightsLayout

if TYPE_CHECKING:
    import onnx

OPSET = 21  # DequantizeLinear's block_size
IR_VERSION = 10  # the oldest IR that opset 21 allows: what older ONNX Runtimes still read
GRAPH_VERSION = "2"  # bumped whenever the graph built for the same files changes
HEADS = ("qa", "embeddings")
INPUTS = ("input_ids", "token_type_ids", "attention_mask")
OUTPUTS = {"qa": ("start_logits", "end_logits"), "embeddings": ("embeddings",)}
# metadata_props keys: what a saved graph was built from (`graph_matches`).
META_GRAPH, META_HEAD, META_WEIGHTS, META_CONFIG = (
    "korqa.graph", "korqa.head", "korqa.weights", "korqa.config")
# The additive mask of padded keys, as the traced model had it: float32's lowest value.
MASK_FILTER = float(np.finfo(np.float32).min)
_EMBEDDINGS = "embeddings."
_WORDS, _POSITIONS, _TYPES = (f"{_EMBEDDINGS}{name}_embeddings.weight"
                              for name in ("word", "position", "token_type"))


class GraphBuilder:
    """Nodes and initializers of one graph, with fresh names for intermediate values."""

    def __init__(self) -> None:
        from onnx import helper

        self.helper = helper
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def add(self, op: str, inputs: Sequence[str], hint: str | None = None,
            outputs: Sequence[str] | None = None, domain: str = "", **attributes: object,
            ) -> str:
        """Append one node; returns its (first) output's name."""
        names = list(outputs) if outputs else [self.fresh(hint or op)]
        self.nodes.append(self.helper.make_node(op, list(inputs), names, domain=domain or None,
                                                **attributes))
        return names[0]

    def constant(self, value: np.ndarray | int | float, name: str | None = None) -> str:
        """An inline initializer holding `value` (an int is int64, a float float32).

        ONNX Runtime's constant sharing merges one-element constants of equal value even when
        one is a scalar and the other has shape [1], which breaks the op that wanted the
        other shape: so the graph's integer constants are all 1-D."""
        from onnx import numpy_helper

        array = np.asarray(value, dtype=np.int64 if isinstance(value, int) else
                           np.float32 if isinstance(value, float) else None)
        name = name or self.fresh("const")
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name


class GraphWeights(Protocol):
    """A model's weights as graph values, by their names in BertModel's state dict without
    `bert.` (e.g. "encoder.layer.0.attention.self.query.weight")."""

    def linear(self, graph: GraphBuilder, names: Sequence[str]) -> str:
        """Linear layers' weights [out_i, in], transposed and side by side: [in, Σ out_i]."""

    def matmul(self, graph: GraphBuilder, x: str, name: str) -> str:
        """x @ Wᵀ of the linear layer whose weight is `name`."""

    def vector(self, graph: GraphBuilder, names: Sequence[str]) -> str:
        """1-D tensors (biases, layer norms), concatenated: float [Σ n_i]."""

    def rows(self, graph: GraphBuilder, name: str, ids: str) -> str:
        """The rows `ids` of an embedding table, as float: [*ids.shape, hidden]."""


def _lookup(names: dict[str, object], name: str) -> str:
    """`name` as the file spells it: with or without the `bert.` of HF's head models."""
    for spelling in (f"bert.{name}", name):
        if spelling in names or spelling + QWEIGHT in names:
            return spelling
    raise ValueError(f"the weights have no tensor {name!r}")


class StoredWeights:
    """Weights left in a safetensors file, read through ONNX external data (module docstring).
    `location` is the file's name relative to the graph's directory."""

    def __init__(self, layout: WeightsLayout, location: str = SAFETENSORS_FILE) -> None:
        self.layout = layout
        self.location = location
        self._made: dict[str, str] = {}

    _TYPES = {"F32": 1, "F16": 10, "I8": 3}  # onnx.TensorProto's FLOAT, FLOAT16, INT8

    def stored(self, graph: GraphBuilder, key: str) -> str:
        """The file's tensor `key` as an initializer that points into the file."""
        if key in self._made:
            return self._made[key]
        from onnx import TensorProto

        tensor = self.layout.tensors[key]
        if tensor.dtype not in self._TYPES:
            raise ValueError(f"{self.layout.path}: tensor {key!r} is {tensor.dtype}; the ONNX "
                             f"graph reads {', '.join(self._TYPES)} only")
        proto = TensorProto(name=key, data_type=self._TYPES[tensor.dtype],
                            dims=list(tensor.shape), data_location=TensorProto.EXTERNAL)
        for field, value in (("location", self.location), ("offset", tensor.offset),
                             ("length", tensor.nbytes)):
            entry = proto.external_data.add()
            entry.key, entry.value = field, str(value)
        graph.initializers.append(proto)
        self._made[key] = key
        return key

    def is_int8(self, name: str) -> bool:
        return _lookup(self.layout.tensors, name) + QWEIGHT in self.layout.tensors

    def float_tensor(self, graph: GraphBuilder, name: str) -> str:
        """Tensor `name` as float32: dequantised int8 blocks, a cast fp16 or the float32."""
        key = _lookup(self.layout.tensors, name)
        if key + QWEIGHT in self.layout.tensors:
            qweight = self.stored(graph, key + QWEIGHT)
            scale = graph.add("Cast", [self.stored(graph, key + QSCALE)], to=1)
            return graph.add("DequantizeLinear", [qweight, scale], f"{name}.dequantized",
                             axis=-1, block_size=self.block(key))
        value = self.stored(graph, key)
        if self.layout.tensors[key].dtype == "F16":
            return graph.add("Cast", [value], to=1)
        return value

    def block(self, key: str) -> int:
        columns = self.layout.tensors[key + QWEIGHT].shape[-1]
        return columns // self.layout.tensors[key + QSCALE].shape[-1]

    def linear(self, graph: GraphBuilder, names: Sequence[str]) -> str:
        parts = [self.float_tensor(graph, name) for name in names]
        stacked = parts[0] if len(parts) == 1 else graph.add("Concat", parts, axis=0)
        return graph.add("Transpose", [stacked], perm=[1, 0])

    def matmul(self, graph: GraphBuilder, x: str, name: str) -> str:
        # The weight as stored, [out, in], multiplied transposed: folding a Transpose as well
        # would hold a second float copy of every weight while the session loads (+65 MB).
        return graph.add("FusedMatMul", [x, self.float_tensor(graph, name)],
                         f"{name}.matmul", domain="com.microsoft", transB=1, alpha=1.0)

    def vector(self, graph: GraphBuilder, names: Sequence[str]) -> str:
        parts = [self.float_tensor(graph, name) for name in names]
        return parts[0] if len(parts) == 1 else graph.add("Concat", parts, axis=0)

    def rows(self, graph: GraphBuilder, name: str, ids: str) -> str:
        if not self.is_int8(name):
            return graph.add("Gather", [self.float_tensor(graph, name), ids])
        key = _lookup(self.layout.tensors, name)
        qrows = graph.add("Gather", [self.stored(graph, key + QWEIGHT), ids])
        scales = graph.add("Cast", [graph.add("Gather", [self.stored(graph, key + QSCALE),
                                                         ids])], to=1)
        return graph.add("DequantizeLinear", [qrows, scales], f"{name}.rows", axis=-1,
                         block_size=self.block(key))


class ArrayWeights:
    """Float weights held inline (`state`: float32 arrays keyed as in a state dict)."""

    def __init__(self, state: dict[str, np.ndarray]) -> None:
        self.state = state
        self._made: dict[tuple[str, ...], str] = {}

    def _inline(self, graph: GraphBuilder, names: Sequence[str], make: object) -> str:
        key = tuple(names)
        if key not in self._made:
            arrays = [self.state[_lookup(self.state, name)] for name in names]
            self._made[key] = graph.constant(make(arrays), "+".join(names))  # type: ignore
        return self._made[key]

    def linear(self, graph: GraphBuilder, names: Sequence[str]) -> str:
        return self._inline(graph, names, lambda arrays: np.concatenate(arrays, axis=0).T)

    def matmul(self, graph: GraphBuilder, x: str, name: str) -> str:
        # A plain MatMul on an initializer: what ONNX Runtime's int8 quantiser looks for.
        return graph.add("MatMul", [x, self.linear(graph, [name])], f"{name}.matmul")

    def vector(self, graph: GraphBuilder, names: Sequence[str]) -> str:
        return self._inline(graph, names, np.concatenate)

    def rows(self, graph: GraphBuilder, name: str, ids: str) -> str:
        return graph.add("Gather", [self._inline(graph, [name], lambda arrays: arrays[0]), ids])


def bert_graph(config: BertConfig, weights: GraphWeights, head: str = "qa",
               input_scales: dict[str, np.ndarray] | None = None,
               metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """The ONNX model of a BERT with `head` ("qa" or "embeddings"). `input_scales` maps a
    linear layer (e.g. "encoder.layer.0.output.dense") to a vector its input is multiplied by
    first: SmoothQuant's division, before int8 quantisation (`korqa.modeling.smoothing`)."""
    from onnx import TensorProto, helper

    if head not in HEADS:
        raise ValueError(f"unknown graph head {head!r}; choose one of {', '.join(HEADS)}")
    graph = GraphBuilder()
    scales = input_scales or {}

    def dense(x: str, name: str) -> str:
        """x @ Wᵀ of the linear layer `name`, bias not added (the fused op after adds it)."""
        if name in scales:
            x = graph.add("Mul", [x, graph.constant(scales[name], f"{name}.inv_scale")])
        return weights.matmul(graph, x, f"{name}.weight")

    def skip_norm(x: str, residual: str, norm: str, bias: str) -> str:
        return graph.add("SkipLayerNormalization", [
            x, residual, weights.vector(graph, [f"{norm}.weight"]),
            weights.vector(graph, [f"{norm}.bias"]), weights.vector(graph, [bias])],
            f"{norm}.out", domain="com.microsoft", epsilon=config.layer_norm_eps)

    ids, types, mask = INPUTS
    # Positions 0 … length−1 cut from a constant, not made by Range: ONNX Runtime rewrites
    # Gather(table, Range(…)) into a Slice its constant sharing then breaks.
    length = graph.add("Shape", [ids], start=1, end=2)
    positions = graph.add("Slice", [
        graph.constant(np.arange(config.max_position_embeddings, dtype=np.int64), "positions"),
        graph.constant(np.array([0], np.int64)), length])
    x = graph.add("Add", [weights.rows(graph, _WORDS, ids), weights.rows(graph, _TYPES, types)])
    x = graph.add("Add", [x, weights.rows(graph, _POSITIONS, positions)])
    x = graph.add("LayerNormalization", [
        x, weights.vector(graph, ["embeddings.LayerNorm.weight"]),
        weights.vector(graph, ["embeddings.LayerNorm.bias"])], "embeddings.out", axis=-1,
        epsilon=config.layer_norm_eps)
    # Each row's length: korqa pads on the right only.
    lengths = graph.add("ReduceSum", [graph.add("Cast", [mask], to=TensorProto.INT32),
                                      graph.constant(np.array([-1], np.int64))], "mask_index",
                        keepdims=0)
    gelu = "BiasGelu" if config.hidden_act == "gelu" else "FastGelu"
    for layer in range(config.num_hidden_layers):
        prefix = f"encoder.layer.{layer}."
        qkv = [f"{prefix}attention.self.{part}" for part in ("query", "key", "value")]
        attended = graph.add("Attention", [
            x, weights.linear(graph, [f"{name}.weight" for name in qkv]),
            weights.vector(graph, [f"{name}.bias" for name in qkv]), lengths],
            f"{prefix}attention", domain="com.microsoft",
            num_heads=config.num_attention_heads, mask_filter_value=MASK_FILTER)
        out = f"{prefix}attention.output."
        x = skip_norm(dense(attended, f"{out}dense"), x, f"{out}LayerNorm", f"{out}dense.bias")
        inner = graph.add(gelu, [dense(x, f"{prefix}intermediate.dense"),
                                 weights.vector(graph, [f"{prefix}intermediate.dense.bias"])],
                          f"{prefix}intermediate", domain="com.microsoft")
        out = f"{prefix}output."
        x = skip_norm(dense(inner, f"{out}dense"), x, f"{out}LayerNorm", f"{out}dense.bias")
    if head == "qa":
        logits = graph.add("Add", [dense(x, "qa_outputs"),
                                   weights.vector(graph, ["qa_outputs.bias"])])
        halves = [graph.fresh("half"), graph.fresh("half")]
        graph.add("Split", [logits, graph.constant(np.array([1, 1], np.int64))],
                  outputs=halves, axis=-1)
        last = graph.constant(np.array([-1], np.int64))
        for half, name in zip(halves, OUTPUTS["qa"], strict=True):
            graph.add("Squeeze", [half, last], outputs=[name])
        shapes = {name: ["batch", "length"] for name in OUTPUTS["qa"]}
    else:
        weight = graph.add("Unsqueeze", [graph.add("Cast", [mask], to=TensorProto.FLOAT),
                                         graph.constant(np.array([-1], np.int64))])
        summed = graph.add("ReduceSum", [graph.add("Mul", [x, weight]),
                                         graph.constant(np.array([-2], np.int64))], keepdims=0)
        count = graph.add("ReduceSum", [weight, graph.constant(np.array([-2], np.int64))],
                          keepdims=0)
        mean = graph.add("Div", [summed, graph.add("Max", [count, graph.constant(1.0)])])
        norm = graph.add("ReduceL2", [mean, graph.constant(np.array([-1], np.int64))],
                         keepdims=1)
        # torch.nn.functional.normalize's floor, so an all-zero vector stays zero.
        graph.add("Div", [mean, graph.add("Max", [norm, graph.constant(1e-12)])],
                  outputs=[OUTPUTS["embeddings"][0]])
        shapes = {OUTPUTS["embeddings"][0]: ["batch", config.hidden_size]}
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "length"])
              for name in INPUTS]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
               for name, shape in shapes.items()]
    model = helper.make_model(
        helper.make_graph(graph.nodes, f"korqa-bert-{head}", inputs, outputs,
                          graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
        producer_name="korqa")
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {META_GRAPH: GRAPH_VERSION, META_HEAD: head,
                                   **(metadata or {})})
    return model


# ---- a model directory's graph ------------------------------------------------------------


def config_fingerprint(directory: str | Path) -> str:
    """sha256 of config.json's content, parsed (so re-indenting it changes nothing)."""
    values = json.loads((Path(directory) / CONFIG_FILE).read_text(encoding="utf-8"))
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def head_of(directory: str | Path) -> str:
    """"qa" for a reader (config.json's architectures name a QA model), else "embeddings"."""
    values = json.loads((Path(directory) / CONFIG_FILE).read_text(encoding="utf-8"))
    return "qa" if any("QuestionAnswering" in name
                       for name in values.get("architectures") or []) else "embeddings"


def expected_metadata(directory: str | Path, head: str | None = None) -> dict[str, str]:
    """What a graph of `directory` with `head` (default: `head_of`) built now records: the
    builder's version, the head, and fingerprints of the weights file's layout and of
    config.json."""
    directory = Path(directory)
    return {META_GRAPH: GRAPH_VERSION, META_HEAD: head or head_of(directory),
            META_WEIGHTS: WeightsLayout.read(directory / SAFETENSORS_FILE).fingerprint,
            META_CONFIG: config_fingerprint(directory)}


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data):
            raise ValueError("truncated")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


def _fields(data: bytes) -> list[tuple[int, bytes | int]]:
    """The top-level fields of one protobuf message: (number, bytes or integer)."""
    fields, position = [], 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position)
        elif wire == 2:
            length, position = _varint(data, position)
            value, position = data[position:position + length], position + length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, position = data[position:position + width], position + width
        else:
            raise ValueError(f"wire type {wire}")
        fields.append((number, value))
    return fields


def graph_metadata(path: str | Path) -> dict[str, str]:
    """A saved graph's metadata_props, read without the onnx package (whose import alone
    takes longer than loading the reader): ModelProto's field 14, each entry a key (1) and a
    value (2). {} for a file that is not an ONNX model."""
    try:
        entries = [dict(_fields(value)) for number, value in _fields(Path(path).read_bytes())
                   if number == 14 and isinstance(value, bytes)]
        return {entry[1].decode(): entry.get(2, b"").decode() for entry in entries}
    except (ValueError, KeyError, AttributeError, UnicodeDecodeError):
        return {}


def directory_graph(directory: str | Path, head: str | None = None) -> onnx.ModelProto:
    """The graph of the model in `directory` with `head` (default: `head_of`), its weights
    left in its model.safetensors."""
    directory = Path(directory)
    weights = directory / SAFETENSORS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{directory}: no {SAFETENSORS_FILE}; ONNX Runtime reads "
                                "weights from safetensors only (`korqa export` writes one)")
    metadata = expected_metadata(directory, head)
    config = BertConfig.from_json_file(directory / CONFIG_FILE)
    return bert_graph(config, StoredWeights(WeightsLayout.read(weights)), metadata[META_HEAD],
                      metadata=metadata)


def write_graph(directory: str | Path) -> Path:
    """Write `directory`/model.onnx, the graph ONNX Runtime reads the model with (`korqa
    export` and `korqa import-e5` ship it beside the weights)."""
    import onnx

    path = Path(directory) / ONNX_FILE
    partial = path.with_name(path.name + ".part")
    onnx.save_model(directory_graph(directory), str(partial))
    partial.replace(path)
    return path
