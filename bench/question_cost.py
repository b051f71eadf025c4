"""What one over-long question costs against a normal one (issue 27: at most about 5x).

    python3 bench/question_cost.py                           # the shipped reader, sample corpus
    python3 bench/question_cost.py --index idx/korquad --before /tmp/before --rounds 3
    python3 bench/question_cost.py --index idx/korquad --read-gate 0   # every paragraph read

Each measurement runs in a fresh process (this checkout's korqa, or with --before also the one
in TREE, taking turns): a pipeline over the index is opened and warmed, then the normal
questions (the sample corpus's, the server's default top_k) and the over-long one (500
characters of random syllables, top_k 20: the probe's worst case; before the limits it held a
server's worker for 4.7 s) are each timed --repeats times, alternating. Reported: median ms of
a normal question and of the over-long one, their ratio, and the reader's windows read.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

NORMAL = ["한라산의 높이는 얼마인가?", "한글은 누가 만들었나?", "훈민정음은 언제 알려졌나?",
          "경복궁은 어디에 있나?", "이순신은 어느 전쟁에서 활약했나?", "직지는 언제 만들어졌나?"]

MEASURE = r"""
import json, sys, time, statistics
from korqa.pipeline import PipelineConfig, open_pipeline
from korqa.modeling.onnx_engine import set_default_threads

args = json.loads(sys.argv[1])
set_default_threads(args["threads"])
pipeline = open_pipeline(args["index"], (), None, args["model"],
                         PipelineConfig(read_gate=args["read_gate"]))
reader = pipeline.reader
forward = reader.engine.forward
windows = [0]

def counted(batch):
    windows[0] += len(batch["input_ids"])
    return forward(batch)

reader.engine.forward = counted
for q in args["normal"][:2]:
    pipeline.ask(q)
times = {"normal": [], "long": []}
read = {"normal": [], "long": []}
for _ in range(args["repeats"]):
    for kind in ("normal", "long"):
        questions = args["normal"] if kind == "normal" else [args["long"]]
        for q in questions:
            windows[0] = 0
            start = time.perf_counter()
            try:
                pipeline.ask(q, None if kind == "normal" else 20)
            except ValueError as refused:  # over a limit: refused, costs nothing to read
                times[kind].append(time.perf_counter() - start)
                read[kind].append(0)
                continue
            times[kind].append(time.perf_counter() - start)
            read[kind].append(windows[0])
print(json.dumps({kind: {"ms": 1000 * statistics.median(t),
                         "windows": statistics.mean(read[kind])} for kind, t in times.items()}))
"""


def long_question(length: int = 500, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(chr(0xAC00 + rng.randrange(11172)) for _ in range(length))


def measure(tree: Path, args: argparse.Namespace) -> dict:
    settings = {"index": args.index, "model": args.model, "threads": args.threads,
                "read_gate": args.read_gate,
                "normal": NORMAL, "long": long_question(), "repeats": args.repeats}
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    done = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(settings)], env=env,
                          capture_output=True, text=True, timeout=1200, cwd=tree)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", help="an index dir (default: the sample corpus's)")
    parser.add_argument("--model", help="reader dir (default: the shipped reader)")
    parser.add_argument("--before", metavar="TREE", help="also measure the korqa in TREE")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--read-gate", type=float, default=0.9,
                        help="the pipeline's read gate (0: every retrieved paragraph is read, "
                             "the worst case `korqa serve --read-gate 0` allows)")
    args = parser.parse_args(argv)
    for name in ("index", "model"):
        if getattr(args, name):
            setattr(args, name, str(Path(getattr(args, name)).resolve()))
    trees = [("after", Path(__file__).resolve().parents[1])]
    if args.before:
        trees.append(("before", Path(args.before)))
    rows: dict[str, list[dict]] = {name: [] for name, _ in trees}
    for round_number in range(args.rounds):
        for name, tree in trees if round_number % 2 == 0 else trees[::-1]:
            result = measure(tree, args)
            result["ratio"] = round(result["long"]["ms"] / result["normal"]["ms"], 2)
            rows[name].append(result)
            print(f"{name:6} round {round_number}: normal {result['normal']['ms']:.0f} ms "
                  f"({result['normal']['windows']:.2f} windows), over-long "
                  f"{result['long']['ms']:.0f} ms ({result['long']['windows']:.1f} windows): "
                  f"{result['ratio']}x", file=sys.stderr, flush=True)
    summary = {name: {"ratio_median": statistics.median(r["ratio"] for r in results),
                      "normal_ms_median": round(statistics.median(r["normal"]["ms"]
                                                                  for r in results), 1),
                      "long_ms_median": round(statistics.median(r["long"]["ms"]
                                                                for r in results), 1)}
               for name, results in rows.items()}
    print(json.dumps({"summary": summary, "rows": rows, "threads": args.threads,
                      "read_gate": args.read_gate}, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
