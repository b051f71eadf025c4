"""What every korqa training run shares: the settings' checks, device and precision, optimiser
groups, schedule, the optimiser step, starting or resuming the run, the JSONL log and the
progress bar. `finetune.py` and `pretrain.py` each keep only their data, their loss and their
run directory."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import random
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from korqa.modeling.checkpoint import save_pretrained
from korqa.training.config import RunConfig
from korqa.training.plot import read_log
from korqa.training.resume import (
    load_state,
    restore_rng,
    resume_source,
    save_state,
    staged_directory,
)

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

_LAYER = re.compile(r"(?:^|\.)layer\.(\d+)\.")


# ---- device, precision, seed ---------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch sees no CUDA device")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if name == "fp16" and device.type != "cuda":
        raise ValueError("fp16 needs CUDA (its GradScaler); use bf16 or fp32 on the CPU")
    return name


def autocast_factory(device: torch.device, precision: str,
                     ) -> Callable[[], contextlib.AbstractContextManager]:
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return functools.partial(torch.autocast, device_type=device.type, dtype=dtype)


class RunSettings(Protocol):
    """What `check_run_config` reads besides the counts: a `RunConfig` with a schedule."""

    device: str
    precision: str
    lr: float
    warmup: float


def check_run_config(config: RunSettings, counts: Sequence[str],
                     optional_counts: Sequence[str]) -> None:
    """The checks every run's settings share: the device and precision names, the fields that
    count something (`counts` at least 1, `optional_counts` too or unset), the threads, and a
    positive learning rate (`lr`) with a warmup (`warmup`) of at least 0."""
    if config.device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {config.device!r}")
    if config.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {config.precision!r}")
    for name in counts:
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}")
    for name in (*optional_counts, "stop_at_step", "threads"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1 (or unset), got {value}")
    if config.lr <= 0 or config.warmup < 0:
        raise ValueError("lr must be > 0 and warmup >= 0")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CPU and every CUDA device


# ---- optimiser and schedule ----------------------------------------------------------------


def layer_depth(name: str, num_layers: int) -> int:
    """0 for the embeddings, i + 1 for encoder layer i, num_layers + 1 above (pooler, heads)."""
    if name.startswith("embeddings.") or ".embeddings." in name:
        return 0
    match = _LAYER.search(name)
    return int(match.group(1)) + 1 if match else num_layers + 1


def parameter_groups(model: torch.nn.Module, lr: float, weight_decay: float,
                     layer_lr_decay: float = 1.0) -> list[dict]:
    """AdamW groups by (depth, decay): biases and LayerNorm weights (1-D) get no weight decay,
    and each layer's learning rate shrinks by `layer_lr_decay` per layer below the head."""
    num_layers = model.config.num_hidden_layers
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = layer_depth(name, num_layers)
        decay = param.ndim >= 2
        group = groups.setdefault((depth, decay), {
            "params": [],
            "lr": lr * layer_lr_decay ** (num_layers + 1 - depth),
            "weight_decay": weight_decay if decay else 0.0,
        })
        group["params"].append(param)
    return [groups[key] for key in sorted(groups)]


def warmup_steps(warmup: float, total_steps: int) -> int:
    """`warmup` is a fraction of the steps (< 1) or a number of steps (>= 1)."""
    steps = round(warmup * total_steps) if warmup < 1 else int(warmup)
    return min(steps, total_steps)


def linear_schedule(optimizer: torch.optim.Optimizer, warmup: int,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to each group's lr, then linear decay; no step ever runs at lr 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def optimizer_step(optimizer: torch.optim.Optimizer,
                   scheduler: torch.optim.lr_scheduler.LRScheduler,
                   scaler: torch.amp.GradScaler, max_grad_norm: float) -> dict[str, float]:
    """Clip the accumulated gradients, step and zero them; the step's lr and gradient norm."""
    scaler.unscale_(optimizer)  # clip the true gradients, not the fp16-scaled ones
    params = [p for group in optimizer.param_groups for p in group["params"]]
    limit = max_grad_norm if max_grad_norm > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(params, limit).item()
    lr = max(group["lr"] for group in optimizer.param_groups)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {"lr": lr, "grad_norm": grad_norm}


@dataclass
class Optimisation:
    """AdamW, its schedule, the fp16 gradient scaler and the autocast they run under."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    autocast: Callable[[], contextlib.AbstractContextManager]

    @classmethod
    def create(cls, groups: list[dict], lr: float, warmup: int, total_steps: int,
               device: torch.device, precision: str) -> Optimisation:
        optimizer = torch.optim.AdamW(groups, lr=lr)
        return cls(optimizer, linear_schedule(optimizer, warmup, total_steps),
                   torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
                   autocast_factory(device, precision))

    def step(self, max_grad_norm: float) -> dict[str, float]:
        return optimizer_step(self.optimizer, self.scheduler, self.scaler, max_grad_norm)

    def state(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}

    def load(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


# ---- the run directory: starting, resuming, logging, saving ------------------------------


@dataclass
class Run:
    """Where a run writes, what it resumes from, what it runs on, and which of the
    `world_size` processes this is (one unless started by torchrun)."""

    out: Path
    resume_from: Path | None
    device: torch.device
    precision: str
    log: JsonlLog
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs and curves."""
        return self.rank == 0

    def shard(self, items: list) -> list:
        """This process's contiguous share of one optimiser step's items."""
        n = len(items)
        return items[n * self.rank // self.world_size:n * (self.rank + 1) // self.world_size]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def mean(self, stats: dict[str, float]) -> dict[str, float]:
        """The average over the processes of each (per-process) statistic."""
        if self.world_size == 1:
            return stats
        values = torch.tensor(list(stats.values()), dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(values)
        return dict(zip(stats, (values / self.world_size).tolist(), strict=True))

    def finish(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()  # nobody leaves while the main process still writes
            torch.distributed.destroy_process_group()

    def resume_or_start(self, optimisation: Optimisation, decided: dict,
                        differences: Callable[[dict], list[str]] | None = None) -> dict | None:
        """The saved state of the run being resumed, after refusing one whose weights would
        follow another trajectory (`decided`, plus what `differences(state)` finds), restoring
        the optimiser and the RNGs and cutting the log back to its step; None for a fresh run,
        whose directory and log the main process starts."""
        if self.resume_from is None:
            if self.is_main:
                self.out.mkdir(parents=True, exist_ok=True)
                self.log.start()
            return None
        state = load_state(self.resume_from)
        check_resumable(state["trajectory"], self.resume_from, decided,
                        differences(state) if differences else [])
        optimisation.load(state)
        restore_rng(state["rng"])
        self.log.truncate(state["step"])
        return state

    def log_start(self, step: int, total_steps: int, global_batch: int, **facts: object) -> None:
        """The log's first row of this process's run: started or resumed, at which step."""
        self.log.write({"kind": "resume" if self.resume_from else "start", "step": step,
                        "total_steps": total_steps, **facts, "device": str(self.device),
                        "precision": self.precision, "world_size": self.world_size,
                        "global_batch": global_batch})

    def progress_bar(self, shown: bool, total: int, step: int, desc: str) -> tqdm:
        """The run's step bar on stderr, on the main process only."""
        return tqdm(total=total, initial=step, disable=not (shown and self.is_main),
                    unit="step", desc=desc, dynamic_ncols=True, file=sys.stderr)


def start_run(out: str | Path, config: RunConfig, finished: str) -> Run:
    """Settle the run in `out` before its model is built, as `config` says (the seed decides
    freshly drawn weights); `finished` names the directory a finished run leaves.

    Under `torchrun` (WORLD_SIZE > 1) this joins the process group: NCCL on GPUs, gloo on CPUs,
    one GPU per process (LOCAL_RANK).
    """
    out = Path(out)
    resume_from = resume_source(out, config.resume, finished)
    torch_device = resolve_device(config.device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = 0
    if world_size > 1:
        rank = int(os.environ["RANK"])
        if torch_device.type == "cuda":
            torch_device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(torch_device)
        torch.distributed.init_process_group("nccl" if torch_device.type == "cuda" else "gloo")
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    return Run(out, resume_from, torch_device, resolve_precision(config.precision, torch_device),
               JsonlLog(out / "log.jsonl", enabled=rank == 0), rank, world_size)


def accumulation(model: torch.nn.Module, last: bool) -> contextlib.AbstractContextManager:
    """Under DDP, gradients are averaged across processes once, on the step's last
    micro-batch; the others only accumulate."""
    no_sync = getattr(model, "no_sync", None)
    return contextlib.nullcontext() if last or no_sync is None else no_sync()


def trajectory(config: object, fields: tuple[str, ...], run: Run, **extra: object) -> dict:
    """What decides the sequence of weights; a resumed run must agree on all of it."""
    decided = {**{name: getattr(config, name) for name in fields}, "precision": run.precision,
               **extra}
    if run.world_size > 1:  # absent for one process, as in runs saved before torchrun support
        decided["world_size"] = run.world_size
    return decided


def check_resumable(saved: dict, source: Path, trajectory: dict,
                    differences: list[str] | None = None) -> None:
    """Refuse to resume a run whose weights would follow another trajectory."""
    found = [f"{key} was {saved.get(key)!r}, now {trajectory.get(key)!r}"
             for key in dict.fromkeys([*trajectory, *saved])
             if saved.get(key) != trajectory.get(key)]
    found += differences or []
    if found:
        raise ValueError(f"{source}: cannot resume with other settings: " + "; ".join(found))


class JsonlLog:
    """The run's log.jsonl, one row per event, opened per row: a killed run loses nothing."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled

    def start(self) -> None:
        if self.enabled:
            self.path.write_text("")

    def truncate(self, step: int) -> None:
        if not self.enabled:
            return
        # Rows written after the checkpoint will be written again by the resumed run.
        rows = [row for row in self.rows() if row.get("step", 0) <= step]
        self.path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(row, ensure_ascii=False) + "\n")

    def rows(self) -> list[dict]:
        return read_log(self.path) if self.path.exists() else []


def save_model_dir(directory: Path, model: torch.nn.Module, tokenizer, state: dict) -> None:
    """A self-contained model dir (weights, config, tokenizer) plus training state, atomically
    (a reader's run directory: `korqa.training.finetune.save_reader_run`)."""
    with staged_directory(directory) as staging:
        save_pretrained(model, staging)
        tokenizer.save(staging)
        save_state(staging, state)
