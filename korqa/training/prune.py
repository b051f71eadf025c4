"""Drop encoder layers from a fine-tuned reader (`korqa prune`).

A fine-tuned BERT's layers are not equally needed: some can go at no cost in F1 (the model
card tells how the shipped reader lost its last one). `layer_drop_scores` is the probe that
finds them; `prune_reader` writes the smaller reader. The QA head then reads the last kept
layer directly; nothing is retrained. An int8 calibration does not carry over (the head's input
changed), so run `korqa calibrate` on the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from korqa.corpus.formats import SquadExample
from korqa.modeling import BertForQuestionAnswering
from korqa.reader.directory import ReaderDir
from korqa.training.config import PruneConfig


def drop_layers(model: BertForQuestionAnswering, layers: Iterable[int]) -> BertForQuestionAnswering:
    """Remove the encoder layers numbered `layers` (0-based) from `model`, in place; its config
    follows. At least one layer must stay."""
    encoder = model.bert.encoder
    count = len(encoder.layer)
    drop = set(layers)
    if not drop:
        raise ValueError("name at least one layer to drop")
    outside = sorted(i for i in drop if not 0 <= i < count)
    if outside:
        raise ValueError(f"layers {outside} do not exist: the model has layers 0–{count - 1}")
    if len(drop) == count:
        raise ValueError(f"dropping all {count} layers leaves no encoder")
    encoder.layer = nn.ModuleList(layer for i, layer in enumerate(encoder.layer) if i not in drop)
    model.config.num_hidden_layers = len(encoder.layer)
    return model


def prune_reader(model_dir: str | Path, out: str | Path, layers: Iterable[int],
                 dtype: str = "fp32") -> Path:
    """Write the reader in `model_dir` without the encoder layers `layers` to `out`, with its
    tokenizer and windows (not its int8 calibration: recalibrate the result)."""
    source = ReaderDir(model_dir)
    model = drop_layers(source.torch_model(), layers)
    return ReaderDir(out).save(model, source.tokenizer(), source.config(), dtype).path


def layer_drop_scores(model_dir: str | Path, examples: Sequence[SquadExample],
                      on_score: Callable[[int | None, float], None] | None = None,
                      ) -> dict[int | None, float]:
    """KorQuAD F1 (0–100, gold paragraph, no particle trimming) of the reader in `model_dir`
    on `examples` with all its layers (key None) and without each single layer (key i).

    Give held-out questions (validation), never the test split. `on_score(layer, f1)` is
    called as each result comes in, since every one is a full read of `examples`.
    """
    from korqa.korquad_metric import score_example
    from korqa.reader.predict import predict

    if not examples:
        raise ValueError("the probe needs at least one question")
    directory = ReaderDir(model_dir)
    model = directory.torch_model()
    tokenizer = directory.tokenizer()
    # Every window is read: a dropped layer changes how sure the reader is, and stopping at
    # a confident window would mix that into the score being compared.
    config = directory.config(n_best=1, batch_size=1, trim_particles=False,
                              stop_confidence=None)
    all_layers = model.bert.encoder.layer
    scores: dict[int | None, float] = {}
    for dropped in [None, *range(len(all_layers))]:
        model.bert.encoder.layer = nn.ModuleList(layer for i, layer in enumerate(all_layers)
                                                 if i != dropped)
        answers = predict(model, tokenizer, list(examples), config, config)
        f1 = sum(score_example(answers[example.qid][0].text, example)[1] for example in examples)
        scores[dropped] = 100 * f1 / len(examples)
        if on_score is not None:
            on_score(dropped, scores[dropped])
    return scores


def prune(config: PruneConfig, on_score: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
    """`korqa prune`. --drop: write the smaller reader and say where (and what to run next).
    --probe: `layer_drop_scores` on `config.limit` validation questions drawn with
    `config.seed` (choosing layers is tuning, so never test ones), each score handed to
    `on_score` as {dropped, f1, questions} as soon as it is known; returns None."""
    from korqa.corpus.formats import read_squad
    from korqa.paths import resolve_reader_dir
    from korqa.splits import sample_split, select_split

    model_dir = resolve_reader_dir(config.model)
    if config.drop is not None:
        if not config.out:
            raise ValueError("--drop needs --out DIR for the smaller reader")
        out = prune_reader(model_dir, config.out, config.drop, config.dtype)
        return {"out": str(out), "dropped": sorted(set(config.drop)),
                "next": f"korqa calibrate --model {out} --data TRAIN.json"}
    if not config.data:
        raise ValueError("--probe needs --data (KorQuAD dev JSON)")
    examples = sample_split(select_split(read_squad(config.data), "validation"), config.limit,
                            config.seed)
    layer_drop_scores(model_dir, examples, lambda layer, f1: on_score(
        {"dropped": layer, "f1": round(f1, 2), "questions": len(examples)}))
    return None
