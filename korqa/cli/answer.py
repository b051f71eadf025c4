"""Answering: `korqa ask`, `chat` and `serve`, over the pipeline of korqa.pipeline."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from korqa.cli.command import Command

if TYPE_CHECKING:
    from korqa.corpus.text import TextReading
    from korqa.distributed import RayServing
    from korqa.pipeline import PipelineConfig, PipelineSources
    from korqa.server.config import ServerConfig

# Where the paragraphs, FAQ pairs and reader come from, the pipeline's knobs, and how .txt/.md
# files are read: the options `ask` and `chat` share.
PIPELINE = ("korqa.pipeline.sources:PipelineSources", "korqa.pipeline.qa:PipelineConfig",
            "korqa.corpus.text:TextReading")


@dataclass
class AskOptions:
    question: str = field(metadata={"help": "the question, in Korean", "positional": True})
    json: bool = field(default=False, metadata={
        "help": "print {answer, score, known, title, paragraph_id, context, start, end, "
                "candidates} as JSON"})


def ask(options: AskOptions, sources: PipelineSources, config: PipelineConfig,
        reading: TextReading) -> int:
    from korqa.pipeline import open_pipeline
    from korqa.pipeline.display import format_answer

    with open_pipeline(sources.index, sources.corpus, sources.faq, sources.model, config,
                       progress=sys.stderr.isatty(), reading=reading,
                       small_talk=sources.small_talk) as pipeline:
        answer = pipeline.ask(options.question)
    print(json.dumps(answer.to_json(), ensure_ascii=False, indent=2) if options.json
          else format_answer(answer, color=sys.stdout.isatty()))
    return 0


def chat(sources: PipelineSources, config: PipelineConfig, reading: TextReading) -> int:
    from korqa.pipeline import open_pipeline
    from korqa.pipeline.chat import run_chat

    with open_pipeline(sources.index, sources.corpus, sources.faq, sources.model, config,
                       progress=sys.stderr.isatty(), reading=reading,
                       small_talk=sources.small_talk) as pipeline:
        return run_chat(pipeline, sys.stdin, sys.stdout, config.top_k,
                        color=sys.stdout.isatty(), interactive=sys.stdin.isatty())


def serve(settings: ServerConfig, cluster: RayServing) -> int:
    if cluster.ray:
        from korqa.distributed import require_ray

        require_ray("korqa serve --ray")
        from korqa.distributed.serve import serve_ray

        return serve_ray(settings, cluster.ray_address, cluster.replicas)
    from korqa.server.app import serve as serve_here

    return serve_here(settings)


COMMANDS = (
    Command(
        "ask", "answer one question from a corpus (retriever + reader) or an FAQ",
        "Retrieve the top-k paragraphs, read each with the reader, fuse reader and retrieval "
        "scores, and print the best answer marked in its paragraph. With no --index/--corpus "
        "the shipped sample corpus is used.",
        (f"{__name__}:AskOptions", *PIPELINE), ask),
    Command(
        "chat", "answer questions one after another (a REPL; reads piped stdin too)",
        "Ask questions line by line; each answer is shown marked in its paragraph. Commands: "
        ":help, :sources, :history, :quit (or Ctrl-D). At a terminal Ctrl-C clears the line, "
        "or drops the question being answered, as in a shell; piped questions stop at Ctrl-C. "
        "The index, FAQ and reader are loaded "
        "once for the whole conversation.",
        PIPELINE, chat),
    Command(
        "serve", "HTTP API (POST /ask, /documents, /feedback; GET /health) and a chat page",
        "Serve the pipeline over HTTP with FastAPI (schema at /openapi.json) and a web chat "
        "page at /. With --index, documents added through POST /documents go into that index; "
        "otherwise the server keeps its own index in DATA_DIR/index, made from --corpus "
        "(default: the sample corpus). Feedback goes to DATA_DIR/feedback.sqlite (`korqa "
        "feedback export` reads it).",
        ("korqa.server.config:ServerConfig", "korqa.distributed:RayServing"), serve),
)
