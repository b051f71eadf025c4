"""Fine-tune a BERT reader on SQuAD-format data (`korqa train`): one readable training loop."""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from korqa.corpus.formats import SquadExample, read_squad
from korqa.korquad_metric import evaluate_predictions
from korqa.modeling import BertForQuestionAnswering
from korqa.modeling.checkpoint import load_model
from korqa.reader.config import ReaderConfig
from korqa.reader.directory import ReaderDir
from korqa.reader.features import (
    FeatureConfig,
    InputFeatures,
    collate,
    convert_examples_to_features,
)
from korqa.reader.predict import PredictConfig, predict
from korqa.splits import TRAINING_SPLITS, title_key, train_validation_test
from korqa.tokenization import Tokenizer
from korqa.training.config import FinetuneConfig
from korqa.training.loop import (
    Optimisation,
    accumulation,
    check_run_config,
    layer_depth,
    parameter_groups,
    start_run,
    trajectory,
    warmup_steps,
)
from korqa.training.plot import plot_curves
from korqa.training.resume import (
    capture_rng,
    restore_rng,
    save_state,
    staged_directory,
)

# What decides the sequence of weights: a resumed run must agree on all of these (the data is
# compared by fingerprint). Evaluation and saving never touch the trajectory, so they may change.
TRAJECTORY_FIELDS = ("epochs", "max_steps", "lr", "batch_size", "grad_accum", "warmup",
                     "weight_decay", "max_grad_norm", "seed", "freeze_layers",
                     "freeze_embeddings", "layer_lr_decay")


@dataclass
class TrainingData:
    """The examples a run trains and validates on; never any of the test split's."""

    train: list[SquadExample]
    validation: list[SquadExample]
    dropped: int  # extra/validation-file examples dropped for touching the test split


@dataclass(frozen=True)
class StepPlan:
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


# ---- data ----------------------------------------------------------------------------------


def load_training_data(config: FinetuneConfig) -> TrainingData:
    """The split's train and validation examples plus the extra files, with test kept out.

    The test split is read only to know what to keep out: an extra or validation file may hold
    the same questions, paragraphs or articles (synthetic questions over the same Wikipedia
    page), and any of those would leak the test set into training or model selection.
    """
    examples = read_squad(config.data)
    train, validation, test = train_validation_test(
        examples, validation_fold=config.validation_fold
    )
    if config.split == "train+validation":
        train, validation = train + validation, []
    test_qids = {example.qid for example in test}
    leaked = test_qids & {example.qid for example in train + validation}
    if leaked:
        raise RuntimeError(f"split error: {len(leaked)} test questions would be trained or "
                           f"validated on, e.g. {sorted(leaked)[:3]}")

    touches_test = _touches(test)
    dropped = 0
    if config.validation_data:
        loaded = read_squad(config.validation_data)
        validation = [example for example in loaded if not touches_test(example)]
        dropped += len(loaded) - len(validation)
    for path in config.extra_data:
        loaded = read_squad(path)
        kept = [example for example in loaded if not touches_test(example)]
        dropped += len(loaded) - len(kept)
        train = train + kept
    return TrainingData(train, validation, dropped)


def _touches(test: list[SquadExample]) -> Callable[[SquadExample], bool]:
    qids = {example.qid for example in test}
    contexts = {example.context for example in test}
    titles = {title_key(example.title) for example in test if example.title}
    return lambda e: e.qid in qids or e.context in contexts or title_key(e.title) in titles


def data_fingerprint(features: list[InputFeatures]) -> str:
    """A hash of exactly what is trained on, so a resume with other data or windows is refused."""
    digest = hashlib.sha256()
    for feature in features:
        digest.update(np.asarray(feature.input_ids, dtype=np.int64).tobytes())
        digest.update(np.asarray([feature.start_position, feature.end_position]).tobytes())
    return f"{len(features)}:{digest.hexdigest()[:32]}"


def epoch_order(n_features: int, seed: int, epoch: int) -> list[int]:
    """The shuffled feature order of one epoch.

    It depends on (seed, epoch) only, so a resumed run recomputes it instead of storing it.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n_features, generator=generator).tolist()


def _subsample(examples: list[SquadExample], limit: int | None, seed: int) -> list[SquadExample]:
    # The same subset at every validation, so the points of the F1 curve are comparable.
    if not limit or limit >= len(examples):
        return examples
    keep = set(random.Random(seed).sample(range(len(examples)), limit))
    return [example for i, example in enumerate(examples) if i in keep]


# ---- model and optimizer -------------------------------------------------------------------



def freeze_lower_layers(model: torch.nn.Module, num_layers: int, embeddings: bool) -> int:
    """Stop training the embeddings and the `num_layers` lowest layers; returns params frozen.

    On a CPU this is the big saving: backward stops at the first trainable layer, and AdamW
    never touches the (large) word-embedding matrix.
    """
    total_layers = model.config.num_hidden_layers
    if not 0 <= num_layers <= total_layers:
        raise ValueError(f"freeze_layers must be in [0, {total_layers}], got {num_layers}")
    deepest_frozen = num_layers if num_layers > 0 else (0 if embeddings else -1)
    frozen = 0
    for name, param in model.named_parameters():
        if layer_depth(name, total_layers) <= deepest_frozen:
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def plan_steps(n_features: int, config: FinetuneConfig, world_size: int = 1) -> StepPlan:
    """Steps per epoch at the global batch: batch_size x grad_accum x world_size features."""
    batches_per_epoch = math.ceil(n_features / (config.batch_size * world_size))
    steps_per_epoch = math.ceil(batches_per_epoch / config.grad_accum)
    total = config.max_steps or config.epochs * steps_per_epoch
    return StepPlan(steps_per_epoch, total, warmup_steps(config.warmup, total))


# ---- one step, one validation --------------------------------------------------------------


def train_step(model: torch.nn.Module, micro_batches: list[list[InputFeatures]],
               pad_id: int, device: torch.device, optimisation: Optimisation,
               max_grad_norm: float) -> dict[str, float]:
    """Accumulate gradients over the micro-batches, clip, step; the step's loss, lr, grad norm.

    `model` is a BertForQuestionAnswering, or its DDP wrapper under torchrun."""
    n_features = sum(len(batch) for batch in micro_batches)
    loss_sum = 0.0
    for i, batch_features in enumerate(micro_batches):
        batch = collate(batch_features, pad_id, with_positions=True)
        batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
        # Weight each micro-batch by its size: the step's loss is the mean over its features.
        weight = len(batch_features) / n_features
        with accumulation(model, last=i == len(micro_batches) - 1):
            with optimisation.autocast():
                loss = model(**batch)
            optimisation.scaler.scale(loss * weight).backward()
        loss_sum += loss.item() * weight
    return {"loss": loss_sum, **optimisation.step(max_grad_norm)}


def validate(model: BertForQuestionAnswering, tokenizer: Tokenizer,
             examples: list[SquadExample], feature_config: FeatureConfig,
             device: torch.device, autocast: Callable,
             trim_particles: bool = True) -> dict[str, float]:
    """EM/F1 of the model's best answer per question; leaves the model training and the RNGs
    untouched, so validating (or not) never changes the weights a run ends with."""
    rng = capture_rng()
    model.eval()
    try:
        with autocast():
            predictions = predict(model, tokenizer, examples, feature_config,
                                  PredictConfig(trim_particles=trim_particles),
                                  device=str(device))
    finally:
        model.train()
        restore_rng(rng)
    best = {qid: (candidates[0].text if candidates else "")
            for qid, candidates in predictions.items()}
    return evaluate_predictions(examples, best)


# ---- checkpoints and the run directory -----------------------------------------------------


def _write_split(path: Path, config: FinetuneConfig, data: TrainingData,
                 evaluated: list[SquadExample]) -> None:
    """Record which questions the run trains and validates on, for audits of the split."""
    split = {"data": config.data, "split": config.split,
             "validation_fold": config.validation_fold, "extra_data": config.extra_data,
             "dropped_for_touching_test": data.dropped,
             "train_qids": [example.qid for example in data.train],
             "validation_qids": [example.qid for example in data.validation],
             "evaluated_qids": [example.qid for example in evaluated]}
    path.write_text(json.dumps(split, ensure_ascii=False, indent=1))


def _throughput(features: int, seconds: float, examples_per_feature: float) -> dict:
    # Training steps only: validation, checkpoints and feature conversion are not counted.
    per_s = features / seconds if seconds else 0.0
    return {"train_s": round(seconds, 2), "features_per_s": round(per_s, 2),
            "examples_per_s": round(per_s * examples_per_feature, 2)}


def _check_config(config: FinetuneConfig) -> None:
    if config.split not in TRAINING_SPLITS:
        raise ValueError(f"split must be one of {TRAINING_SPLITS}, got {config.split!r}")
    check_run_config(config, ("epochs", "batch_size", "grad_accum"), ("max_steps", "eval_limit"))
    if config.layer_lr_decay <= 0:
        raise ValueError(f"layer_lr_decay must be > 0, got {config.layer_lr_decay}")


def save_reader_run(directory: Path, model: torch.nn.Module, tokenizer: Tokenizer,
                    config: ReaderConfig, state: dict) -> None:
    """A reader directory (`ReaderDir.save`: weights, tokenizer, the windows it was trained
    on) plus the training state, written atomically."""
    with staged_directory(directory) as staging:
        ReaderDir(staging).save(model, tokenizer, config)
        save_state(staging, state)


# ---- the run -------------------------------------------------------------------------------


def finetune(config: FinetuneConfig) -> dict:
    """Train as `config` says, validating and checkpointing on the way; returns the summary."""
    _check_config(config)
    started = time.perf_counter()
    run = start_run(config.out, config, "best")
    out, resume_from, device, precision, log = (run.out, run.resume_from, run.device,
                                                run.precision, run.log)

    source = resume_from or Path(config.model)
    tokenizer = Tokenizer.from_pretrained(source)
    model = load_model(BertForQuestionAnswering, source).to(device)
    data = load_training_data(config)
    feature_config = ReaderConfig.with_windows(config)
    features = convert_examples_to_features(data.train, tokenizer, feature_config,
                                            is_training=True)
    if not features:
        raise ValueError(f"{config.data}: no training examples in split {config.split!r}")
    validation = _subsample(data.validation, config.eval_limit, config.seed)
    plan = plan_steps(len(features), config, run.world_size)
    fingerprint = data_fingerprint(features)
    decided = trajectory(config, TRAJECTORY_FIELDS, run)

    freeze_lower_layers(model, config.freeze_layers, config.freeze_embeddings)
    groups = parameter_groups(model, config.lr, config.weight_decay, config.layer_lr_decay)
    optimisation = Optimisation.create(groups, config.lr, plan.warmup_steps, plan.total_steps,
                                       device, precision)

    # Features per optimizer step, over all processes.
    per_step = config.grad_accum * config.batch_size * run.world_size
    trained = run.wrap(model)
    state = run.resume_or_start(optimisation, decided, lambda state: [] if state["data"] ==
                                fingerprint else ["the training features differ (data, split "
                                                  "or windowing changed)"])
    step, best = (state["step"], state["best"]) if state else (0, None)
    if state is None and run.is_main:
        _write_split(out / "split.json", config, data, validation)

    def save_last() -> None:
        epoch, step_in_epoch = divmod(step, plan.steps_per_epoch)
        position = {"epoch": epoch, "feature": step_in_epoch * per_step}
        save_reader_run(out / "last", model, tokenizer, feature_config, {
            "step": step, "position": position, "best": best, "trajectory": decided,
            "data": fingerprint, "args": asdict(config), **optimisation.state(),
            "rng": capture_rng(),
        })

    run.log_start(step, plan.total_steps, per_step, train_features=len(features))
    stop_at = min(plan.total_steps, config.stop_at_step or plan.total_steps)
    bar = run.progress_bar(config.progress, plan.total_steps, step, "train")
    train_seconds, trained_features = 0.0, 0
    order_epoch, order = -1, []
    model.train()
    while step < stop_at:
        epoch, step_in_epoch = divmod(step, plan.steps_per_epoch)
        if epoch != order_epoch:
            order_epoch, order = epoch, epoch_order(len(features), config.seed, epoch)
        indices = order[step_in_epoch * per_step:(step_in_epoch + 1) * per_step]
        if len(indices) < run.world_size:  # a short last step: every process needs a feature
            indices += order[:run.world_size - len(indices)]
        mine = run.shard(indices)
        micro_batches = [[features[i] for i in mine[j:j + config.batch_size]]
                         for j in range(0, len(mine), config.batch_size)]

        tic = time.perf_counter()
        stats = train_step(trained, micro_batches, tokenizer.pad_id, device, optimisation,
                           config.max_grad_norm)
        stats.update(run.mean({"loss": stats["loss"]}))
        train_seconds += time.perf_counter() - tic
        trained_features += len(indices)
        step += 1
        log.write({"kind": "train", "step": step, "epoch": round(step / plan.steps_per_epoch, 4),
                   **stats})
        bar.update(1)
        bar.set_postfix(loss=f"{stats['loss']:.3f}", lr=f"{stats['lr']:.2e}", refresh=False)

        epoch_end = step % plan.steps_per_epoch == 0
        periodic = config.eval_every and step % config.eval_every == 0
        validating = run.is_main and bool(validation) and (
            epoch_end or periodic or step == plan.total_steps)
        if validating:
            tic = time.perf_counter()
            metrics = validate(model, tokenizer, validation, feature_config, device,
                               optimisation.autocast,
                               config.trim_particles)
            log.write({"kind": "eval", "step": step,
                       "epoch": round(step / plan.steps_per_epoch, 4), **metrics,
                       "seconds": round(time.perf_counter() - tic, 2)})
            if config.progress:
                bar.write(f"step {step}: validation EM {metrics['exact_match']:.2f} "
                          f"F1 {metrics['f1']:.2f}", file=sys.stderr)
            if best is None or metrics["f1"] > best["f1"]:
                best = {"step": step, "epoch": round(step / plan.steps_per_epoch, 4),
                        "exact_match": metrics["exact_match"], "f1": metrics["f1"]}
                save_reader_run(out / "best", model, tokenizer, feature_config,
                                {**best, "metrics": metrics, "args": asdict(config)})
            plot_curves(log.path, out / "curves.png")
        saving = config.save_every and step % config.save_every == 0
        if run.is_main and (validating or saving or step == stop_at):
            save_last()
    bar.close()

    finished = step >= plan.total_steps
    if not run.is_main:
        run.finish()
        return {"run_dir": str(out), "rank": run.rank, "status": "finished" if finished
                else "stopped", "step": step}
    if finished and not validation:
        # Nothing to select by: the final weights are the run's model.
        record = {"step": step, "epoch": round(step / plan.steps_per_epoch, 4)}
        save_reader_run(out / "best", model, tokenizer, feature_config,
                        {**record, "metrics": None, "args": asdict(config)})
    plot_curves(log.path, out / "curves.png")
    summary = {
        "run_dir": str(out),
        "status": "finished" if finished else "stopped",
        "step": step,
        "total_steps": plan.total_steps,
        "epoch": round(step / plan.steps_per_epoch, 4),
        "best": best,
        "train_examples": len(data.train),
        "train_features": len(features),
        "validation_examples": len(validation),
        "dropped_for_touching_test": data.dropped,
        "device": str(device),
        "precision": precision,
        "world_size": run.world_size,
        "global_batch": per_step,
        "elapsed_s": round(time.perf_counter() - started, 2),
        **_throughput(trained_features, train_seconds, len(data.train) / len(features)),
    }
    log.write({"kind": "end", "step": step, "summary": summary})
    (out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    run.finish()
    return summary
