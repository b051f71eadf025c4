"""How many function hops a reader follows from `korqa ask`'s entry point to the printed answer.

    python3 bench/ask_hops.py                          # the README's question, sample corpus
    python3 bench/ask_hops.py --baseline /tmp/korqa-old  # `git archive OLD | tar -x -C …`
    python3 bench/ask_hops.py --show                   # print each path too
    python3 bench/ask_hops.py --ask "질문" --index idx/korquad

How it counts. `korqa.cli.main(["ask", …])` runs in a fresh process under a `sys.setprofile`
tracer that keeps a stack of the korqa-defined functions being run (a comprehension, lambda,
generator expression or module body belongs to the function around it). At each stage of
answering, the first time it happens, the tracer takes the chain of korqa functions on that
stack, from the entry point down:

    the index opened     Index.__init__        the reader loaded   ReaderDir.load
    the first search     Index.search          the first read      Reader.read
    the answer decided   QAPipeline.decide     the answer printed  the print() call

Those chains are the path a reader follows. The table gives:

  hops to the first search   the calls from the entry point down to `Index.search`, each call
                             one hop (main → handler → QAPipeline.ask → read → search: 4);
  functions met first        the functions of the path a reader meets, in the order the
                             program first enters them, before the first search (the stages'
                             chains visited in time order: opening the index counts too);
  hops to the answer         the path's distinct functions but the entry point: each one a
                             hop into a function a reader opens, whichever stage needs it;
  modules                    the distinct modules those functions live in.

Each tree is traced in its own process with korqa imported from it (PYTHONPATH), from a
neutral working directory; `--baseline DIR` traces another source tree the same way. Both use
one cache directory, filled by a first untraced run, so no tree's count includes building the
sample corpus's index or tracing the reader for ONNX Runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README_QUESTION = "한라산의 높이는 얼마인가?"
LANDMARKS = {"Index.__init__": "the index opened", "Index.search": "the first search",
             "ReaderDir.load": "the reader loaded", "Reader.read": "the first read",
             "QAPipeline.decide": "the answer decided", "print": "the answer printed"}
# Runs in the traced process: prints {"chains": {landmark: [[module, function], …]},
# "entered": [[module, function], …] (each korqa function in the order first entered)}.
TRACER = r"""
import json, os, sys
import korqa
root = os.path.dirname(korqa.__file__) + os.sep
landmarks = set(json.loads(sys.argv[1]))
argv = json.loads(sys.argv[2])
inner = ("<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>", "<lambda>", "<module>")
stack, chains, entered = [], {}, {}
def name(code):
    return [code.co_filename[len(root):].removesuffix(".py").replace(os.sep, "."),
            code.co_qualname]
def own(code):
    return code.co_filename.startswith(root) and not code.co_qualname.endswith(inner)
def record(key, chain):
    if key in landmarks and key not in chains:
        chains[key] = chain
def trace(frame, event, arg):
    if event == "call" and own(frame.f_code):
        stack.append((frame, name(frame.f_code)))
        entered.setdefault(tuple(stack[-1][1]), len(entered))
        record(frame.f_code.co_qualname, [n for _, n in stack])
    elif event == "return" and stack and stack[-1][0] is frame:
        stack.pop()
    elif event == "c_call" and arg is print and stack and "QAPipeline.decide" in chains:
        record("print", [n for _, n in stack] + [["builtins", "print"]])
from korqa.cli import main
sys.setprofile(trace)
try:
    code = main(argv)
finally:
    sys.setprofile(None)
sys.stdout = sys.__stdout__
print("\n@@" + json.dumps({"code": code, "chains": chains,
                           "entered": [list(key) for key in entered]}))
"""


def trace(tree: Path, argv: list[str], cache: str) -> dict:
    """The chains of one `korqa ask` with korqa imported from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree), "KORQA_CACHE": cache}
    env.setdefault("KORQA_MODEL", str(REPO / "models" / "korqa-reader"))
    with tempfile.TemporaryDirectory() as neutral:
        subprocess.run([sys.executable, "-m", "korqa", *argv], env=env, cwd=neutral,
                       check=True, capture_output=True, timeout=600)  # fills the caches
        done = subprocess.run([sys.executable, "-c", TRACER, json.dumps(list(LANDMARKS)),
                               json.dumps(argv)], env=env, cwd=neutral, check=True,
                              capture_output=True, text=True, timeout=600)
    result = json.loads(done.stdout.rpartition("\n@@")[2])
    missing = set(LANDMARKS) - set(result["chains"])
    if missing:
        raise SystemExit(f"{tree}: no stage {', '.join(sorted(missing))} was reached")
    return result


def count(result: dict) -> dict[str, object]:
    chains = result["chains"]
    functions = {tuple(step) for chain in chains.values() for step in chain
                 if step[0] != "builtins"}
    order = {tuple(key): i for i, key in enumerate(result["entered"])}
    search_entered = order[tuple(chains["Index.search"][-1])]
    met_before = sorted((f for f in functions if order[f] < search_entered), key=order.get)
    return {"hops to the first search": len(chains["Index.search"]) - 1,
            "functions met first": len(met_before),
            "hops to the answer": len(functions) - 1,
            "modules": len({module for module, _ in functions}),
            "_met": met_before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ask", default=README_QUESTION, help="the question to follow")
    parser.add_argument("--index", help="an index directory (default: the sample corpus)")
    parser.add_argument("--baseline", type=Path, help="another korqa source tree to count")
    parser.add_argument("--show", action="store_true", help="print each stage's chain")
    args = parser.parse_args()
    argv = ["ask", args.ask, "--json", *(["--index", args.index] if args.index else [])]
    trees = {"this tree": REPO, **({"baseline": args.baseline} if args.baseline else {})}
    with tempfile.TemporaryDirectory(prefix="korqa-hops-") as cache:
        results = {label: trace(tree, argv, cache) for label, tree in trees.items()}
    counts = {label: count(result) for label, result in results.items()}
    keys = [key for key in next(iter(counts.values())) if not key.startswith("_")]
    print(f"{'':26}" + "".join(f"{label:>12}" for label in counts))
    for key in keys:
        print(f"{key:<26}" + "".join(f"{c[key]:>12}" for c in counts.values()))
    if args.show:
        for label, result in results.items():
            print(f"\n{label}:")
            for landmark, chain in result["chains"].items():
                print(f"  {LANDMARKS[landmark]}: " + " → ".join(f for _, f in chain))
            print("  met before the first search: " +
                  ", ".join(f for _, f in counts[label]["_met"]))


if __name__ == "__main__":
    main()
