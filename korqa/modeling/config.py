"""A BERT's hyper-parameters (HF's `config.json`), without torch: the ONNX Runtime path reads
them too, and it never imports torch."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

logger = logging.getLogger("korqa.modeling.bert")

# hidden_act values of HF configs we implement: "gelu" is the exact erf form, the other two are
# the tanh approximation (HF computes them with slightly different formulas, equal to ~1e-7).
ACTIVATIONS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}

# A model directory's config and weights (`korqa.modeling.checkpoint` reads and writes them;
# the ONNX engine names them without importing torch).
CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
# The graph ONNX Runtime reads the model with; its weights stay in model.safetensors
# (`korqa.modeling.onnx_graph`).
ONNX_FILE = "model.onnx"
# The int8 calibration beside a model (`korqa calibrate`) and SmoothQuant's α
# (`korqa.modeling.quantize` says how it was chosen): int8 reading and the ONNX cache key.
ABSMAX_FILE = "activation_absmax.safetensors"
DEFAULT_ALPHA = 0.85
# How weights may be stored (`korqa.modeling.checkpoint.SAVE_DTYPES`), for options that offer it.
SaveDtype = Literal["fp32", "fp16", "int8"]


@dataclass
class BertConfig:
    """Hyper-parameters of a BERT, named and defaulted as in HF's `config.json` (bert-base)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    pad_token_id: int | None = 0
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings", "type_vocab_size")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"field '{name}' must be a positive integer, got {value!r}")
        for name in ("layer_norm_eps", "hidden_dropout_prob", "attention_probs_dropout_prob",
                     "initializer_range"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"field '{name}' must be a number, got {value!r}")
            setattr(self, name, float(value))
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"field '{name}' must be in [0, 1), got {getattr(self, name)!r}")
        for name in ("layer_norm_eps", "initializer_range"):
            if getattr(self, name) <= 0.0:
                raise ValueError(f"field '{name}' must be > 0, got {getattr(self, name)!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"field 'hidden_size' ({self.hidden_size}) must be divisible by "
                             f"'num_attention_heads' ({self.num_attention_heads})")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"field 'hidden_act' must be one of {sorted(ACTIVATIONS)}, "
                             f"got {self.hidden_act!r}")
        pad = self.pad_token_id
        if pad is not None and (not isinstance(pad, int) or isinstance(pad, bool)
                                or not 0 <= pad < self.vocab_size):
            raise ValueError(f"field 'pad_token_id' must be null or an id below vocab_size "
                             f"({self.vocab_size}), got {pad!r}")

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> BertConfig:
        """Build from a HF-style dict; unknown keys are ignored, bad values name `source`."""
        if values.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{source}: field 'position_embedding_type' must be 'absolute', got "
                             f"{values['position_embedding_type']!r}")
        if values.get("model_type", "bert") != "bert":
            logger.warning("%s: model_type is %r; reading it as a BERT", source,
                           values["model_type"])
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in values.items() if k in known})
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> BertConfig:
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(values).__name__}")
        return cls.from_dict(values, source=str(path))

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json_file(self, path: str | Path, architectures: list[str] | None = None) -> None:
        # model_type and architectures are what transformers' AutoConfig/AutoModel dispatch on.
        values = {"model_type": "bert", "architectures": architectures or ["BertModel"],
                  **self.to_dict()}
        Path(path).write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")
