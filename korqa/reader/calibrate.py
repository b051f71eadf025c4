"""Calibrate a reader for int8 CPU inference: the input ranges of its linear layers on real
questions, saved beside the model (see `korqa.modeling.quantize`)."""

from __future__ import annotations

from pathlib import Path

import torch

from korqa.corpus.formats import SquadExample
from korqa.modeling.engines import load_reader_model
from korqa.modeling.quantize import record_input_absmax, save_input_absmax
from korqa.reader.features import FeatureConfig, convert_examples_to_features
from korqa.reader.predict import compute_logits
from korqa.tokenization import Tokenizer


def calibrate_reader(model_dir: str | Path, examples: list[SquadExample],
                     feature_config: FeatureConfig | None = None) -> Path:
    """Run the float model over `examples` (training questions: never the test split), cut
    into the windows it reads (`FeatureConfig.for_model` unless given), and write the
    per-channel input maxima of every linear layer into `model_dir`."""
    if not examples:
        raise ValueError("calibration needs at least one question")
    model = load_reader_model(model_dir, int8=False)
    tokenizer = Tokenizer.from_pretrained(model_dir)
    window = feature_config or FeatureConfig.for_model(model_dir)
    features = convert_examples_to_features(examples, tokenizer, window, False)
    with torch.inference_mode():
        absmax = record_input_absmax(
            model, lambda: compute_logits(model, features, tokenizer.pad_id, batch_size=8))
    return save_input_absmax(absmax, model_dir)
