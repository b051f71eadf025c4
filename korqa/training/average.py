"""Average the weights of readers fine-tuned from one start (`korqa average`, a "model soup").

Fine-tuned copies of one pre-trained model tend to stay in one basin of the loss, so their
uniform weight average is usually at least as good as the best of them and costs nothing at
inference (Wortsman et al. 2022, "Model soups"). Readers with different configurations or
vocabularies cannot be averaged and are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from korqa.modeling import BertForQuestionAnswering
from korqa.modeling.checkpoint import load_model, save_pretrained
from korqa.reader.features import FeatureConfig
from korqa.tokenization import Tokenizer

TOKENIZER_FILE = "tokenizer.json"


def average_readers(model_dirs: Sequence[str | Path], out: str | Path,
                    dtype: str = "fp32") -> Path:
    """Write the uniform average of the readers in `model_dirs` to `out` (with the first one's
    tokenizer and windows); every reader must share its configuration and vocabulary."""
    dirs = [Path(d) for d in model_dirs]
    if len(dirs) < 2:
        raise ValueError("averaging needs at least two readers")
    first = load_model(BertForQuestionAnswering, dirs[0])
    vocabulary = (dirs[0] / TOKENIZER_FILE).read_bytes()
    total = {key: value.detach().double() for key, value in first.state_dict().items()}
    for directory in dirs[1:]:
        if (directory / TOKENIZER_FILE).read_bytes() != vocabulary:
            raise ValueError(f"{directory}: its tokenizer differs from {dirs[0]}'s; readers "
                             "with different vocabularies cannot be averaged")
        other = load_model(BertForQuestionAnswering, directory)
        if other.config.to_dict() != first.config.to_dict():
            raise ValueError(f"{directory}: its config differs from {dirs[0]}'s")
        for key, value in other.state_dict().items():
            total[key] += value.detach().double()
    first.load_state_dict({key: (value / len(dirs)).float() for key, value in total.items()})
    out = Path(out)
    save_pretrained(first, out, dtype=dtype)
    Tokenizer.from_pretrained(dirs[0]).save(out)
    FeatureConfig.for_model(dirs[0]).save(out)
    return out
