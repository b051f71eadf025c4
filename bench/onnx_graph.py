"""The shipped ONNX graph against the graph korqa traced with torch before it shipped one.

    # the tree before this work traces its graph into a cache, once:
    PYTHONPATH=OLD KORQA_CACHE=/tmp/old-cache python3 -c "from korqa.modeling.onnx_engine \\
        import build_onnx_engine; print(build_onnx_engine('models/korqa-reader').path)"
    python3 bench/onnx_graph.py --traced /tmp/old-cache/onnx/HASH.onnx [--threads 2]

1. What ONNX Runtime makes of the shipped graph when a session loads it: the graph's nodes by
   type as shipped and as optimised (ORT's own optimised copy, `optimized_model_filepath`, at
   the extended level: the same transformations as the default level, before the layout
   changes that make a saved graph machine-specific), and its initializers' bytes by type.
2. Loading: each graph opened in a fresh process, taking turns (`--loads` each): wall and CPU
   seconds of the session's creation (the shipped one includes the check of its fingerprints
   and the folding of its int8 weights), and VmRSS / VmHWM after it.
3. Logits and speed on every window of the `--split` questions (KorQuAD dev test: 1,387
   questions, their gold paragraphs cut into the reader's windows), one window a run as the
   pipeline reads, the two sessions taking turns window by window: the largest absolute
   difference of start and end logits over the windows' tokens, and windows per second.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
KORQUAD = REPO.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"

LOAD = """
import json, resource, sys, time
from pathlib import Path
start, cpu = time.perf_counter(), time.process_time()
from korqa.modeling import onnx_engine
if sys.argv[1] == "shipped":
    session = onnx_engine.open_session(sys.argv[2], int(sys.argv[3]))
else:
    session = onnx_engine._create(sys.argv[2], onnx_engine.session_options(int(sys.argv[3])))
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
print(json.dumps({"s": seconds, "cpu_s": cpu, "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
                  "hwm_mb": int(status["VmHWM"].split()[0]) / 1024}))
"""


def graph_report(model: Path, threads: int) -> dict:
    """Nodes by type as shipped and as ONNX Runtime optimises them; initializer bytes."""
    import onnx
    import onnxruntime as ort

    from korqa.modeling.onnx_engine import session_source

    source, options = session_source(model, threads)
    with tempfile.TemporaryDirectory() as scratch:
        options.optimized_model_filepath = str(Path(scratch) / "optimized.onnx")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", "weights.bin")
        ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath, load_external_data=False)
    shipped = onnx.load(source, load_external_data=False)

    def summary(model_proto: onnx.ModelProto) -> dict:
        sizes: collections.Counter = collections.Counter()
        for tensor in model_proto.graph.initializer:
            count = int(np.prod(tensor.dims)) if tensor.dims else 1
            width = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
            sizes[onnx.TensorProto.DataType.Name(tensor.data_type)] += count * width
        return {"nodes": dict(collections.Counter(n.op_type for n in model_proto.graph.node)),
                "initializer_mb": {k: round(v / 2**20, 1) for k, v in sorted(sizes.items())}}

    return {"shipped": summary(shipped), "optimized": summary(optimized),
            "graph_file_kb": round(Path(source).stat().st_size / 1024, 1)}


def loads(model: Path, traced: Path, threads: int, runs: int) -> dict[str, list[dict]]:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    results: dict[str, list[dict]] = {"shipped": [], "traced": []}
    for _ in range(runs):
        for name, path in (("shipped", model), ("traced", traced)):
            done = subprocess.run([sys.executable, "-c", LOAD, name, str(path), str(threads)],
                                  capture_output=True, text=True, check=True, env=env,
                                  cwd=tempfile.gettempdir())
            results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def windows(model: Path, data: Path, split: str) -> list:
    from korqa.corpus.formats import read_squad
    from korqa.reader.directory import ReaderDir
    from korqa.reader.features import convert_examples_to_features
    from korqa.splits import select_split

    directory = ReaderDir(model)
    examples = select_split(read_squad(data), split)
    return convert_examples_to_features(examples, directory.tokenizer(), directory.config(),
                                        False)


def compare(model: Path, traced: Path, features: list, threads: int) -> dict:
    from korqa.modeling.onnx_engine import _create, open_session, session_options

    sessions = {"shipped": open_session(model, threads),
                "traced": _create(str(traced), session_options(threads))}
    seconds = {name: 0.0 for name in sessions}
    worst = {"start": 0.0, "end": 0.0}
    for number, feature in enumerate(features):
        ids = np.array([feature.input_ids], dtype=np.int64)
        feed = {"input_ids": ids, "token_type_ids": np.array([feature.token_type_ids]),
                "attention_mask": np.ones_like(ids)}
        order = list(sessions) if number % 2 == 0 else list(sessions)[::-1]
        logits = {}
        for name in order:
            start = time.perf_counter()
            logits[name] = sessions[name].run(None, feed)
            seconds[name] += time.perf_counter() - start
        for side, a, b in zip(("start", "end"), logits["shipped"], logits["traced"],
                              strict=True):
            worst[side] = max(worst[side], float(np.abs(a - b).max()))
    return {"windows": len(features), "max_abs_diff": worst,
            "windows_per_s": {name: len(features) / s for name, s in seconds.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "korqa-reader")
    parser.add_argument("--traced", type=Path, required=True,
                        help="the graph the tree before traced (see the docstring)")
    parser.add_argument("--data", type=Path, default=KORQUAD)
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--loads", type=int, default=5, help="fresh-process loads of each")
    parser.add_argument("--limit", type=int, help="compare only the first N windows")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    report = graph_report(args.model, args.threads)
    print(json.dumps(report, indent=1))
    timings = loads(args.model, args.traced, args.threads, args.loads)
    for name, runs in timings.items():
        print(f"load [{name}]: median {statistics.median(r['s'] for r in runs):.3f} s "
              f"(CPU {statistics.median(r['cpu_s'] for r in runs):.3f} s), RSS "
              f"{statistics.median(r['rss_mb'] for r in runs):.0f} MB, peak "
              f"{max(r['hwm_mb'] for r in runs):.0f} MB")
    features = windows(args.model, args.data, args.split)[:args.limit]
    logits = compare(args.model, args.traced, features, args.threads)
    print(f"{logits['windows']} windows of the {args.split} split: max |Δ| start logits "
          f"{logits['max_abs_diff']['start']:.3g}, end {logits['max_abs_diff']['end']:.3g}; "
          + ", ".join(f"{name} {speed:.2f} windows/s"
                      for name, speed in logits["windows_per_s"].items()))
    if args.json:
        args.json.write_text(json.dumps({"graph": report, "loads": timings, "logits": logits},
                                        indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
