"""Cold start: how long one `korqa ask` takes as a fresh process, and what korqa holds in memory.

    python3 bench/cold_start.py                      # sample corpus, KorQuAD (built here), serve
    python3 bench/cold_start.py --index idx/korquad  # an existing KorQuAD index
    python3 bench/cold_start.py --runs 9 --no-serve
    python3 bench/cold_start.py --baseline /tmp/korqa-old   # `git archive OLD | tar -x -C …`
    python3 bench/cold_start.py --python BASE/bin/python --baseline OLD \
        --baseline-python OLDVENV/bin/python --serve-python FULL/bin/python --install

Each command runs as a new process, `--runs` times after one untimed warm-up run (which fills
the caches: the ONNX trace, the sample corpus's index), and the median wall time is printed
beside the named peer `python -c "import korqa"`, measured in the same run: the ratio is
korqa's start-up overhead, which is what stays comparable on a noisy machine. The rows:

  - import korqa:      the peer: an interpreter starting and importing korqa's package;
  - kiwi build:        building the shared Kiwi analyser and loading its language model, alone
                       (what any question over a morpheme index, or any particle trimming, costs);
  - ask (sample):      `korqa ask QUESTION` over the shipped sample corpus;
  - first ask:         the same on an empty cache (a new KORQA_CACHE each run): the sample
                       corpus is indexed, and whatever else a first use does (the tree before
                       this work traced the reader for ONNX Runtime);
  - ask (KorQuAD):     `korqa ask` over a hybrid index of the 961 KorQuAD dev paragraphs (built
                       in a temporary directory with the README's command, by each tree's own
                       korqa, unless --index is given; skipped when the shared data is absent).

CPU s is the median user + system time of a run (it exceeds the wall time where threads
overlap, and is steadier than wall time on a shared machine); peak RSS is each process's own
ru_maxrss. Both come from wait4. Then `korqa serve` over the sample corpus is started (per
tree) on a free loopback port with a temporary data directory, asked one question over HTTP,
and its VmRSS (now) and VmHWM (peak) are read from /proc before it is stopped. Last, one
process loads what the server holds part by part (this tree only), so each part's share shows.

Each run imports korqa from this checkout (PYTHONPATH, from a neutral working directory).
`--baseline DIR` runs every command also with korqa imported from another source tree, in
turns with this one, so that a before/after comparison sees the same load. `--python` and
`--baseline-python` name each tree's interpreter (its virtual environment: e.g. the base
install without torch, and the tree before's own install); `--serve-python` the one that
runs this tree's `korqa serve` (the base install has no server extra).

`--install` first installs each tree's base install (`pip install -c constraints.txt -e
TREE`) into a new virtual environment, timing it, and reports the environment's `du -sm`;
pip's cache is whatever this machine's is (warm after the first time), the same for both.

Threads: ONNX Runtime and torch use one per physical core by default (2 on this project's
machine); `--threads N` sets OMP_NUM_THREADS for every run and `korqa serve --threads N`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from procfs import memory_mib

REPO = Path(__file__).resolve().parents[1]
KORQUAD = REPO.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"
SAMPLE_QUESTION = "한라산의 높이는 얼마인가?"
KORQUAD_QUESTION = "임종석이 여의도 농민 폭력 시위를 주도한 혐의로 지명수배 된 날은?"


def korqa_command(python: str | Path | None = None) -> list[str]:
    """The `korqa` console script of `python`'s environment (default: this interpreter's),
    else `python -m korqa.cli`."""
    python = Path(python or sys.executable)
    script = python.parent / "korqa"
    return [str(script)] if script.is_file() else [str(python), "-m", "korqa.cli"]


def fresh_install(tree: Path, scratch: Path) -> dict:
    """Seconds to install `tree`'s base install into a new virtual environment, and the
    environment's size in MB (`du -sm`)."""
    venv = scratch / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    start = time.perf_counter()
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c",
                    "constraints.txt", "-e", "."], check=True, cwd=tree,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    size = subprocess.run(["du", "-sm", str(venv)], check=True, capture_output=True,
                          text=True).stdout.split()[0]
    torch = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"],
                           capture_output=True).returncode == 0
    shutil.rmtree(venv)
    return {"install_s": seconds, "venv_mb": int(size), "torch": torch}


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user + system), peak RSS in MB (both from wait4's rusage of
    this child) and its stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        # Run from a neutral folder: `python -c` puts the working directory first on sys.path,
        # which would shadow the tree that PYTHONPATH names.
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env,
                                   cwd=tempfile.gettempdir())
        # Linux carries ru_maxrss over from the parent at fork; this script stays far smaller
        # than what it measures, so the peak is the child's own.
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n"
                               f"{err.read().decode(errors='replace')[-2000:]}")
        return (wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
                out.read().decode(errors="replace"))


def measure(name: str, command: list[str] | dict[str, list[str]],
            trees: dict[str, dict[str, str]], runs: int, fresh_cache: bool = False) -> list[dict]:
    """`runs` timed runs of `command` (or of each tree's own command) under each tree's
    environment, taken in turns (A, B, A, B, …) so that both see the same machine load; one
    row per tree. `fresh_cache`: every run (the warm-up too) gets a new, empty KORQA_CACHE."""
    commands = command if isinstance(command, dict) else dict.fromkeys(trees, command)

    def run(tree: str) -> tuple[float, float, float, str]:
        if not fresh_cache:
            return timed(commands[tree], trees[tree])
        with tempfile.TemporaryDirectory(prefix="korqa-cache-") as cache:
            return timed(commands[tree], {**trees[tree], "KORQA_CACHE": cache})

    for tree in trees:
        run(tree)  # warm-up: caches filled, files in the page cache
    series: dict[str, list[tuple[float, float, float, str]]] = {tree: [] for tree in trees}
    for _ in range(runs):
        for tree in trees:
            result = run(tree)
            series[tree].append(result)
            print(f"  {name} [{tree}]: {result[0]:.2f} s, {result[1]:.2f} s CPU, "
                  f"{result[2]:.0f} MB", file=sys.stderr)
    rows = []
    for tree, results in series.items():
        walls = [r[0] for r in results]
        rows.append({"name": name, "tree": tree, "median_s": statistics.median(walls),
                     "min_s": min(walls), "max_s": max(walls),
                     "cpu_s": statistics.median(r[1] for r in results),
                     "peak_rss_mb": max(r[2] for r in results), "output": results[-1][3].strip()})
    return rows


def korquad_index(args: argparse.Namespace, env: dict[str, str], korqa: list[str],
                  scratch: Path) -> Path | None:
    """The KorQuAD index to ask over: --index, else one built under `scratch` by the korqa
    that `env` imports (each tree reads the index format it writes)."""
    if args.index:
        return Path(args.index)
    if not args.korquad.is_file():
        print(f"skipping the KorQuAD row: {args.korquad} not found (give --korquad FILE or "
              "--index DIR)", file=sys.stderr)
        return None
    out = scratch / "idx-korquad"
    scratch.mkdir(parents=True, exist_ok=True)
    print(f"building {out} (korqa index --retriever hybrid) …", file=sys.stderr)
    subprocess.run([*korqa, "index", "--corpus", str(args.korquad), "--out", str(out),
                    "--retriever", "hybrid", "--no-progress"], check=True, env=env,
                   cwd=tempfile.gettempdir(),
                   stdout=subprocess.DEVNULL)
    return out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def measure_serve(env: dict[str, str], korqa: list[str], scratch: Path,
                  threads: int | None) -> dict:
    scratch.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [*korqa, "serve", "--port", str(port), "--data-dir",
               str(scratch / "serve-data"), "--log-level", "warning"]
    if threads:
        command += ["--threads", str(threads)]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=env, cwd=tempfile.gettempdir())
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"korqa serve exited {process.returncode}:\n"
                                   f"{process.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as reply:
                    if json.load(reply).get("status") == "ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("korqa serve did not come up within 300 s")
            time.sleep(0.2)
        ready = time.perf_counter() - start
        loaded = memory_mib(process.pid)
        request = urllib.request.Request(
            f"{base}/ask", data=json.dumps({"question": SAMPLE_QUESTION}).encode(),
            headers={"Content-Type": "application/json"})
        asked = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as reply:
            answer = json.load(reply)["answer"]
        first_answer = time.perf_counter() - asked
        answered = memory_mib(process.pid)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return {"ready_s": ready, "first_answer_s": first_answer, "answer": answer,
            "rss_loaded_mb": loaded["VmRSS"], "rss_mb": answered["VmRSS"],
            "hwm_mb": answered["VmHWM"]}


# Loads what `korqa serve` holds one part at a time, printing VmRSS after each: what each costs.
BREAKDOWN = """
import json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
stages = [("python", rss())]
import korqa.server.app
stages.append(("server modules (fastapi, numpy, tokenizers)", rss()))
from korqa.pipeline import open_pipeline
pipeline = open_pipeline()
stages.append(("sample index open", rss()))
from korqa.morphology import kiwi
kiwi()
stages.append(("Kiwi built", rss()))
pipeline.reader
stages.append(("reader loaded (" + pipeline.reader.engine.name + ")", rss()))
pipeline.ask(sys.argv[1])
stages.append(("one question answered", rss()))
try:
    import torch
    stages.append(("torch imported (what the torch engine adds first)", rss()))
except ImportError:
    pass
print(json.dumps(stages, ensure_ascii=False))
"""


def measure_breakdown(env: dict[str, str], python: str) -> list[tuple[str, float]]:
    done = subprocess.run([python, "-c", BREAKDOWN, SAMPLE_QUESTION], env=env,
                          cwd=tempfile.gettempdir(),
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command (default 5)")
    parser.add_argument("--index", metavar="DIR", help="a KorQuAD index (default: build one)")
    parser.add_argument("--korquad", type=Path, default=KORQUAD, metavar="FILE",
                        help=f"KorQuAD dev JSON to index (default {KORQUAD})")
    parser.add_argument("--threads", type=int, help="torch/ORT threads (default: theirs)")
    parser.add_argument("--no-serve", dest="serve", action="store_false",
                        help="skip the `korqa serve` memory measurement")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also run korqa from this source tree (e.g. `git archive` of an "
                             "older commit), in turns with this one")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--python", default=sys.executable,
                        help="this tree's interpreter (default: this one)")
    parser.add_argument("--baseline-python", help="the baseline's (default: --python)")
    parser.add_argument("--serve-python",
                        help="the interpreter of this tree's `korqa serve` (default: --python)")
    parser.add_argument("--install", action="store_true",
                        help="also time a fresh base install of each tree and size its venv")
    args = parser.parse_args()

    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    trees = {"this": {**env, "PYTHONPATH": str(REPO)}}
    sources = {"this": REPO}
    pythons = {"this": args.python}
    if args.baseline:
        sources["baseline"] = Path(args.baseline).resolve()
        trees["baseline"] = {**env, "PYTHONPATH": str(sources["baseline"])}
        pythons["baseline"] = args.baseline_python or args.python
    korqa = {tree: korqa_command(python) for tree, python in pythons.items()}
    rows: list[dict] = []
    serve: dict[str, dict] = {}
    installs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="korqa-cold-") as scratch_name:
        scratch = Path(scratch_name)
        if args.install:
            for tree, source in sources.items():
                installs[tree] = fresh_install(source, scratch)
                print(f"  install [{tree}]: {installs[tree]}", file=sys.stderr)
        rows += measure("import korqa", {tree: [python, "-c", "import korqa"]
                                         for tree, python in pythons.items()}, trees, args.runs)
        rows += measure("kiwi build", {tree: [python, "-c", "from korqa.morphology import "
                                              "kiwi; kiwi().tokenize('가')"]
                                       for tree, python in pythons.items()}, trees, args.runs)
        rows += measure("ask (sample)", {tree: [*korqa[tree], "ask", SAMPLE_QUESTION]
                                         for tree in trees}, trees, args.runs)
        rows += measure("first ask", {tree: [*korqa[tree], "ask", SAMPLE_QUESTION]
                                      for tree in trees}, trees, args.runs, fresh_cache=True)
        indexes = {tree: korquad_index(args, tree_env, korqa[tree], scratch / tree)
                   for tree, tree_env in trees.items()}
        if all(index is not None for index in indexes.values()):
            rows += measure("ask (KorQuAD)", {tree: [*korqa[tree], "ask", KORQUAD_QUESTION,
                                                     "--index", str(index)]
                                              for tree, index in indexes.items()},
                            trees, args.runs)
        if args.serve:
            serving = {**korqa, "this": korqa_command(args.serve_python or args.python)}
            for tree, tree_env in trees.items():
                serve[tree] = measure_serve(tree_env, serving[tree], scratch / tree,
                                            args.threads)
            breakdown = measure_breakdown(trees["this"], args.serve_python or args.python)

    print(f"{len(os.sched_getaffinity(0))} CPUs available; median of {args.runs} runs each"
          + (f"; baseline = korqa from {args.baseline}, runs taken in turns" if args.baseline
             else ""))
    print(f"{'command':<16} {'tree':<9} {'median s':>9} {'min–max s':>13} {'× import':>9} "
          f"{'CPU s':>7} {'peak RSS MB':>12}")
    peers = {row["tree"]: row["median_s"] for row in rows if row["name"] == "import korqa"}
    for row in rows:
        spread = f"{row['min_s']:.2f}–{row['max_s']:.2f}"
        print(f"{row['name']:<16} {row['tree']:<9} {row['median_s']:>9.2f} {spread:>13} "
              f"{row['median_s'] / peers[row['tree']]:>9.2f} {row['cpu_s']:>7.2f} "
              f"{row['peak_rss_mb']:>12.0f}")
    for row in rows:
        if row["name"].startswith("ask"):
            first = row["output"].splitlines()[0] if row["output"] else ""
            print(f"  {row['name']} [{row['tree']}] answered: {first}")
    for tree, result in serve.items():
        print(f"korqa serve (sample corpus) [{tree}]: ready in {result['ready_s']:.1f} s, RSS "
              f"{result['rss_loaded_mb']:.0f} MB loaded, {result['rss_mb']:.0f} MB after one "
              f"answer ({result['first_answer_s']:.2f} s: {result['answer']}), peak "
              f"{result['hwm_mb']:.0f} MB")
    for tree, result in installs.items():
        print(f"base install [{tree}]: {result['install_s']:.0f} s, venv {result['venv_mb']} MB "
              f"(du -sm), torch {'installed' if result['torch'] else 'absent'}")
    if args.serve:
        print("what `korqa serve` holds [this], VmRSS after each part is loaded in turn:")
        previous = 0.0
        for stage, mb in breakdown:
            print(f"  {stage:<58} {mb:>6.0f} MB  (+{mb - previous:.0f})")
            previous = mb
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "serve": serve, "installs": installs,
                                               "breakdown": breakdown if args.serve else None},
                                              ensure_ascii=False, indent=2) + "\n",
                                   encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
