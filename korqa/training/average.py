"""Average the weights of readers fine-tuned from one start (`korqa average`, a "model soup").

Fine-tuned copies of one pre-trained model tend to stay in one basin of the loss, so their
uniform weight average is usually at least as good as the best of them and costs nothing at
inference (Wortsman et al. 2022, "Model soups"). Readers with different configurations or
vocabularies cannot be averaged and are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from korqa.reader.directory import ReaderDir
from korqa.training.config import AverageConfig

TOKENIZER_FILE = "tokenizer.json"


def average_readers(model_dirs: Sequence[str | Path], out: str | Path,
                    dtype: str = "fp32") -> Path:
    """Write the uniform average of the readers in `model_dirs` to `out` (with the first one's
    tokenizer and windows); every reader must share its configuration and vocabulary."""
    dirs = [ReaderDir(d) for d in model_dirs]
    if len(dirs) < 2:
        raise ValueError("averaging needs at least two readers")
    first = dirs[0].torch_model()
    vocabulary = (dirs[0].path / TOKENIZER_FILE).read_bytes()
    total = {key: value.detach().double() for key, value in first.state_dict().items()}
    for directory in dirs[1:]:
        if (directory.path / TOKENIZER_FILE).read_bytes() != vocabulary:
            raise ValueError(f"{directory.path}: its tokenizer differs from {dirs[0].path}'s; "
                             "readers with different vocabularies cannot be averaged")
        other = directory.torch_model()
        if other.config.to_dict() != first.config.to_dict():
            raise ValueError(f"{directory.path}: its config differs from {dirs[0].path}'s")
        for key, value in other.state_dict().items():
            total[key] += value.detach().double()
    first.load_state_dict({key: (value / len(dirs)).float() for key, value in total.items()})
    return ReaderDir(out).save(first, dirs[0].tokenizer(), dirs[0].config(), dtype).path


def write_average(config: AverageConfig) -> dict[str, Any]:
    """`korqa average`: `average_readers` as `config` asks; where it wrote, and from what."""
    return {"out": str(average_readers(config.models, config.out, config.dtype)),
            "models": config.models}
