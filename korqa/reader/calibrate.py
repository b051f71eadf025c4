"""Calibrate a reader for int8 reading: the input ranges of its linear layers on real questions,
saved beside the model (see `korqa.modeling.quantize`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from korqa.corpus.formats import SquadExample
from korqa.modeling.engines import TorchEngine
from korqa.modeling.quantize import record_input_absmax, save_input_absmax
from korqa.reader.config import CalibrateConfig
from korqa.reader.directory import ReaderDir
from korqa.reader.features import FeatureConfig, convert_examples_to_features
from korqa.reader.predict import compute_logits


def calibrate_reader(model_dir: str | Path, examples: list[SquadExample],
                     feature_config: FeatureConfig | None = None) -> Path:
    """Run the float model over `examples` (training questions: never the test split), cut
    into the windows it reads (its `ReaderConfig` unless given), and write the per-channel
    input maxima of every linear layer into `model_dir`."""
    if not examples:
        raise ValueError("calibration needs at least one question")
    directory = ReaderDir(model_dir)
    model = directory.torch_model()
    tokenizer = directory.tokenizer()
    features = convert_examples_to_features(examples, tokenizer,
                                            feature_config or directory.config(), False)
    engine = TorchEngine(model)
    absmax = record_input_absmax(
        model, lambda: compute_logits(engine, features, tokenizer.pad_id, batch_size=8))
    return save_input_absmax(absmax, directory.path)


@dataclass
class Calibration:
    path: Path
    questions: int

    def __str__(self) -> str:
        return f"wrote {self.path} ({self.questions} questions)"


def calibrate(config: CalibrateConfig) -> Calibration:
    """`korqa calibrate`: `calibrate_reader` on `config.limit` questions of its split, drawn
    at random with its seed."""
    from korqa.corpus.formats import read_squad
    from korqa.splits import sample_split, select_split

    examples = sample_split(select_split(read_squad(config.data), config.split), config.limit,
                            config.seed)
    return Calibration(calibrate_reader(config.model, examples), len(examples))
