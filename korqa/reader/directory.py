"""`ReaderDir`: a reader model directory, the one place that reads and writes it.

A reader directory holds HF-format weights (config.json, model.safetensors), the graph ONNX
Runtime reads them with (model.onnx, whose weights stay in model.safetensors), the tokenizer
(tokenizer.json or vocab.txt) and `reader_config.json` (its `ReaderConfig`: the windows it was
trained on, and how it reads). It may also hold the int8 calibration `korqa calibrate` writes
(activation_absmax.safetensors) and the pipeline's confidence.json. Saving writes the first
four together, so no writer can leave the windows behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from korqa.modeling.engines import load_engine
from korqa.paths import HOW_TO_GET_A_READER, default_reader_dir
from korqa.reader.config import ReaderConfig
from korqa.reader.reader import Reader
from korqa.tokenization import Tokenizer

if TYPE_CHECKING:
    from torch import nn

    from korqa.modeling.bert import BertForQuestionAnswering

READER_CONFIG_FILE = "reader_config.json"


class ReaderDir:
    """A reader directory: `path`, else the default reader (`korqa.paths.default_reader_dir`:
    $KORQA_MODEL or the shipped models/korqa-reader)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path else default_reader_dir()

    def __repr__(self) -> str:
        return f"ReaderDir({str(self.path)!r})"

    def require(self) -> ReaderDir:
        """This directory, or a clear error saying how to get a reader when it holds none."""
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(HOW_TO_GET_A_READER.format(path=self.path))
        return self

    def config(self, **overrides: Any) -> ReaderConfig:
        """Its `ReaderConfig` (BERT's windows and the default reading when it has no
        reader_config.json), with `overrides` (field=value) applied."""
        path = self.path / READER_CONFIG_FILE
        if path.is_file():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"{path}: not a valid reader config ({error})") from None
            config = ReaderConfig.from_dict(saved, str(path))
        else:
            config = ReaderConfig()
        return ReaderConfig.from_dict({**config.to_dict(), **overrides},
                                      f"{self.path}: reader settings")

    def tokenizer(self) -> Tokenizer:
        return Tokenizer.from_pretrained(self.require().path)

    def torch_model(self) -> BertForQuestionAnswering:
        """The float PyTorch model, in eval mode (to change or to train: averaging, pruning,
        exporting, calibrating)."""
        from korqa.modeling.bert import BertForQuestionAnswering
        from korqa.modeling.checkpoint import load_model

        return load_model(BertForQuestionAnswering, self.require().path).eval()

    def load(self, engine: str = "auto", int8: bool = False, device: str = "cpu",
             **overrides: Any) -> Reader:
        """A `Reader` of this directory. engine: "torch", "onnx" (ONNX Runtime, CPU only) or
        "auto" (onnx on the CPU when onnxruntime is installed); int8 reads with ONNX Runtime's
        int8 (the directory must hold the calibration `korqa calibrate` writes). `overrides`
        replace fields of its `ReaderConfig`."""
        self.require()
        config = self.config(**overrides)
        return Reader(load_engine(self.path, engine, int8, device), self.tokenizer(), config,
                      self.path)

    def save(self, model: nn.Module, tokenizer: Tokenizer, config: ReaderConfig,
             dtype: str = "fp32") -> ReaderDir:
        """Write `model` (a BertForQuestionAnswering), `tokenizer` and `config` here. An int8
        calibration is not carried over from anywhere: run `korqa calibrate` on the result."""
        from korqa.modeling.checkpoint import save_pretrained
        from korqa.modeling.onnx_graph import write_graph

        save_pretrained(model, self.path, dtype=dtype)
        tokenizer.save(self.path)
        self.save_config(config)
        write_graph(self.path)
        return self

    def save_config(self, config: ReaderConfig) -> Path:
        path = self.path / READER_CONFIG_FILE
        path.write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path
