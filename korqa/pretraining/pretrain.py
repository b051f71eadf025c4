"""Pre-train a BERT on masked-LM + next-sentence prediction (`korqa pretrain`): one loop."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from korqa.modeling import BertConfig, BertForPreTraining
from korqa.modeling.checkpoint import load_model
from korqa.pretraining.config import PretrainConfig
from korqa.pretraining.data import InstanceStream, TrainingInstance, collate
from korqa.tokenization import Tokenizer
from korqa.training.loop import (
    Optimisation,
    accumulation,
    check_run_config,
    parameter_groups,
    save_model_dir,
    start_run,
    trajectory,
    warmup_steps,
)
from korqa.training.plot import read_log, smooth
from korqa.training.resume import capture_rng

# Encoder shapes; the vocabulary size always comes from the tokenizer.
MODEL_SIZES = {
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 256},
    "small": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
              "intermediate_size": 1024},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072},
}

# What decides the sequence of weights; a resumed run must agree on all of them.
TRAJECTORY_FIELDS = ("corpus", "config", "max_steps", "batch_size", "grad_accum", "lr", "warmup",
                     "weight_decay", "max_grad_norm", "max_seq_length", "short_seq_prob",
                     "mask_prob", "max_predictions", "whole_word_mask", "sop", "doc_buffer",
                     "instance_buffer", "max_docs_per_file", "seed")
# Statistics of one process's share of a step, averaged over the processes for the log.
PROCESS_MEANS = ("loss", "mlm_loss", "nsp_loss", "mlm_acc", "nsp_acc", "tokens")
FINAL_ACCURACY_STEPS = 100  # "final" accuracies average this many last steps (one is noisy)


# ---- model ---------------------------------------------------------------------------------


def model_config(name_or_path: str, tokenizer: Tokenizer) -> BertConfig:
    """A named size (tiny, small, base) or a config.json, sized to the tokenizer's vocabulary."""
    sized = {"vocab_size": tokenizer.vocab_size, "pad_token_id": tokenizer.pad_id}
    if name_or_path in MODEL_SIZES:
        return BertConfig(max_position_embeddings=512, **MODEL_SIZES[name_or_path], **sized)
    if not Path(name_or_path).is_file():
        raise FileNotFoundError(f"--config {name_or_path}: not one of {sorted(MODEL_SIZES)} "
                                f"and no such file")
    return dataclasses.replace(BertConfig.from_json_file(name_or_path), **sized)


def sparse_forward(model: BertForPreTraining, batch: dict[str, torch.Tensor],
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(MLM logits [N, V] at the N masked tokens, NSP logits [B, 2]).

    The same heads as `model(...)`, but the vocabulary projection runs on the ~15 % of
    positions that are predicted instead of all of them (BERT's gather_indexes): the [B, L, V]
    scores would dominate a small model's step time and memory.
    """
    layers, pooled = model.bert(batch["input_ids"], batch["token_type_ids"],
                                batch["attention_mask"], output_all_encoded_layers=False)
    picked = layers[-1][batch["mlm_rows"], batch["mlm_columns"]]  # [N, H]
    return model.cls.predictions(picked), model.cls.seq_relationship(pooled)


class SparsePretraining(torch.nn.Module):
    """`sparse_forward` as a module's forward, so that DDP sees (and syncs) the whole pass."""

    def __init__(self, model: BertForPreTraining) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return sparse_forward(self.model, batch)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # the tied decoder counts once


# ---- one step ------------------------------------------------------------------------------


def train_step(model: torch.nn.Module, micro_batches: list[list[TrainingInstance]],
               pad_id: int, device: torch.device, optimisation: Optimisation,
               max_grad_norm: float) -> dict[str, float]:
    """Accumulate MLM + NSP gradients over the micro-batches, clip, step; the step's stats.

    `model` is a SparsePretraining, or its DDP wrapper under torchrun."""
    sums = dict.fromkeys(("mlm_loss", "nsp_loss"), 0.0)
    counts = dict.fromkeys(("mlm_correct", "mlm_total", "nsp_correct", "nsp_total", "tokens"), 0)
    for i, instances in enumerate(micro_batches):
        batch = collate(instances, pad_id)
        batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
        with accumulation(model, last=i == len(micro_batches) - 1):
            with optimisation.autocast():
                mlm_logits, nsp_logits = model(batch)
            # Losses in fp32: a bf16 log-softmax over 32k classes loses digits.
            mlm_loss = F.cross_entropy(mlm_logits.float(), batch["mlm_labels"])
            nsp_loss = F.cross_entropy(nsp_logits.float(), batch["nsp_labels"])
            optimisation.scaler.scale((mlm_loss + nsp_loss) / len(micro_batches)).backward()
        sums["mlm_loss"] += mlm_loss.item() / len(micro_batches)
        sums["nsp_loss"] += nsp_loss.item() / len(micro_batches)
        counts["mlm_correct"] += int((mlm_logits.argmax(-1) == batch["mlm_labels"]).sum())
        counts["mlm_total"] += len(batch["mlm_labels"])
        counts["nsp_correct"] += int((nsp_logits.argmax(-1) == batch["nsp_labels"]).sum())
        counts["nsp_total"] += len(batch["nsp_labels"])
        counts["tokens"] += int(batch["attention_mask"].sum())
    stepped = optimisation.step(max_grad_norm)
    return {"loss": sums["mlm_loss"] + sums["nsp_loss"], **sums,
            "mlm_acc": counts["mlm_correct"] / max(1, counts["mlm_total"]),
            "nsp_acc": counts["nsp_correct"] / max(1, counts["nsp_total"]),
            **stepped, "tokens": counts["tokens"]}


# ---- curves --------------------------------------------------------------------------------


def plot_pretraining(log_path: str | Path, png_path: str | Path) -> None:
    """MLM loss, MLM accuracy and NSP (or SOP) accuracy against the optimizer step."""
    train = [row for row in read_log(log_path) if row.get("kind") == "train"]
    steps = [row["step"] for row in train]
    figure = Figure(figsize=(8, 8))
    figure.subplots_adjust(left=0.1, right=0.98, top=0.97, bottom=0.06, hspace=0.1)
    FigureCanvasAgg(figure)
    panels = figure.subplots(3, 1, sharex=True)
    for axes, key, label, color in ((panels[0], "mlm_loss", "MLM loss", "tab:blue"),
                                    (panels[1], "mlm_acc", "MLM accuracy", "tab:green"),
                                    (panels[2], "nsp_acc", "NSP accuracy", "tab:orange")):
        values = [row[key] for row in train]
        axes.plot(steps, values, color=color, alpha=0.3, linewidth=0.8)
        if values:
            axes.plot(steps, smooth(values, 0.95), color=color, label=f"{label} (smoothed)")
            axes.legend(loc="best")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
    panels[2].set_xlabel("optimizer step")
    figure.savefig(png_path, dpi=100)


# ---- the run -------------------------------------------------------------------------------


def _check_config(config: PretrainConfig) -> None:
    check_run_config(config, ("max_steps", "batch_size", "grad_accum", "save_every"),
                     ("max_docs_per_file",))
    if not config.corpus:
        raise ValueError("no corpus given")


def _vocab_digest(tokenizer: Tokenizer) -> str:
    vocab = sorted(tokenizer.backend.get_vocab().items(), key=lambda item: item[1])
    return hashlib.sha256("\n".join(token for token, _ in vocab).encode()).hexdigest()[:16]


def _batches(stream: Iterator[TrainingInstance], batch_size: int,
             grad_accum: int) -> Iterator[list[list[TrainingInstance]]]:
    while True:
        yield [list(itertools.islice(stream, batch_size)) for _ in range(grad_accum)]


def pretrain(config: PretrainConfig) -> dict:
    """Pre-train as `config` says, checkpointing on the way; returns the run's summary."""
    _check_config(config)
    started = time.perf_counter()
    run = start_run(config.out, config, "final")
    out, resume_from, device, precision, log = (run.out, run.resume_from, run.device,
                                                run.precision, run.log)

    tokenizer = Tokenizer.from_pretrained(resume_from or config.tokenizer)
    if resume_from:
        model = load_model(BertForPreTraining, resume_from)
    else:
        model = BertForPreTraining(model_config(config.config, tokenizer))
    if config.max_seq_length > model.config.max_position_embeddings:
        raise ValueError(f"max_seq_length {config.max_seq_length} exceeds the model's "
                         f"max_position_embeddings ({model.config.max_position_embeddings})")
    model.to(device).train()
    optimisation = Optimisation.create(
        parameter_groups(model, config.lr, config.weight_decay), config.lr,
        warmup_steps(config.warmup, config.max_steps), config.max_steps, device, precision)
    decided = trajectory(config, TRAJECTORY_FIELDS, run, vocab=_vocab_digest(tokenizer))
    instances = InstanceStream(config.corpus, tokenizer, config, config.seed,
                               config.max_docs_per_file)
    stream = iter(instances)

    per_step = config.batch_size * config.grad_accum * run.world_size  # over all processes
    trained = run.wrap(SparsePretraining(model))
    state = run.resume_or_start(optimisation, decided)
    step, tokens_seen = (state["step"], state["tokens_seen"]) if state else (0, 0)
    # The stream is a function of its own seed (no global RNG): skipping what was trained on
    # finds the place.
    for _ in itertools.islice(stream, step * per_step):
        pass

    def save_last() -> None:
        save_model_dir(out / "last", model, tokenizer, {
            "step": step, "instances": step * per_step, "tokens_seen": tokens_seen,
            "trajectory": decided, "args": asdict(config),
            **optimisation.state(), "rng": capture_rng(),
        })

    parameters = count_parameters(model)
    run.log_start(step, config.max_steps, per_step, parameters=parameters)
    stop_at = min(config.max_steps, config.stop_at_step or config.max_steps)
    bar = run.progress_bar(config.progress, config.max_steps, step, "pretrain")
    train_seconds, data_seconds = 0.0, 0.0
    # Every process reads the same stream and trains on its share of each micro-batch.
    batches = _batches(stream, config.batch_size * run.world_size, config.grad_accum)
    while step < stop_at:
        tic = time.perf_counter()
        micro_batches = [run.shard(batch) for batch in next(batches)]
        data_seconds += time.perf_counter() - tic
        tic = time.perf_counter()
        stats = train_step(trained, micro_batches, tokenizer.pad_id, device, optimisation,
                           config.max_grad_norm)
        stats.update(run.mean({key: stats[key] for key in PROCESS_MEANS}))
        stats["tokens"] = round(stats["tokens"] * run.world_size)
        train_seconds += time.perf_counter() - tic
        step += 1
        tokens_seen += stats["tokens"]
        log.write({"kind": "train", "step": step, **stats, "tokens_seen": tokens_seen})
        bar.update(1)
        bar.set_postfix(mlm=f"{stats['mlm_loss']:.3f}", mlm_acc=f"{stats['mlm_acc']:.3f}",
                        nsp_acc=f"{stats['nsp_acc']:.2f}", refresh=False)
        if run.is_main and (step % config.save_every == 0 or step == stop_at):
            save_last()
            plot_pretraining(log.path, out / "curves.png")
    bar.close()

    finished = step >= config.max_steps
    if not run.is_main:
        run.finish()
        return {"run_dir": str(out), "rank": run.rank, "step": step,
                "status": "finished" if finished else "stopped"}
    train_rows = [row for row in log.rows() if row.get("kind") == "train"]
    tail = train_rows[-FINAL_ACCURACY_STEPS:]
    summary = {
        "run_dir": str(out),
        "status": "finished" if finished else "stopped",
        "step": step,
        "total_steps": config.max_steps,
        "parameters": parameters,
        "model": {key: getattr(model.config, key) for key in
                  ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                   "intermediate_size")},
        "instances_seen": step * per_step,
        "tokens_seen": tokens_seen,
        "corpus_passes": instances.passes,
        f"mlm_acc_last{len(tail)}": _mean(row["mlm_acc"] for row in tail),
        f"nsp_acc_last{len(tail)}": _mean(row["nsp_acc"] for row in tail),
        f"mlm_loss_last{len(tail)}": _mean(row["mlm_loss"] for row in tail),
        "device": str(device),
        "precision": precision,
        "world_size": run.world_size,
        "global_batch": per_step,
        "train_s": round(train_seconds, 1),
        "data_s": round(data_seconds, 1),
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    if finished:
        # The model to fine-tune: HF-format weights with the tokenizer beside them.
        save_model_dir(out / "final", model, tokenizer,
                       {"step": step, "summary": summary, "args": asdict(config)})
        summary["final"] = str(out / "final")
    plot_pretraining(log.path, out / "curves.png")
    log.write({"kind": "end", "step": step, "summary": summary})
    (out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    run.finish()
    return summary


def _mean(values: Iterator[float]) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else None
