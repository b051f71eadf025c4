"""`korqa serve`'s settings, apart from the app so that reading them (`korqa serve --help`)
needs neither FastAPI nor the rest of the serve extra."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from korqa.corpus.text import TextReading
from korqa.pipeline import PipelineConfig, PipelineSources

DEFAULT_DEADLINE = 10.0  # seconds a question may take, queueing included
# Seconds a question may be expected to wait for the reader before it is refused at once: what
# keeps the answers let in fast under overload (bench/load.py overload measures it).
DEFAULT_MAX_WAIT = 1.5


@dataclass
class ServerConfig:
    """What `korqa serve` was asked for; the "help" metadata is its `--help` (korqa.cli_options).
    The pipeline's knobs and sources are those of `korqa ask`, held whole, never copied."""

    host: str = field(default="127.0.0.1", metadata={
        "help": "address to listen on; one that other machines reach needs --api-key"})
    port: int = field(default=8000, metadata={"help": "TCP port to listen on"})
    sources: PipelineSources = field(default_factory=PipelineSources)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    data_dir: str | None = field(default=None, metadata={
        "help": "feedback and the server's own index (default ~/.local/share/korqa/server)",
        "metavar": "DIR"})
    allow_origins: list[str] = field(default_factory=list, metadata={
        "help": "allow cross-origin requests from ORIGIN (repeatable; default: same origin "
                "only)", "flag": "--allow-origin", "action": "append", "metavar": "ORIGIN"})
    max_queue: int = field(default=64, metadata={
        "help": "questions waiting at most; more get 503", "metavar": "N"})
    max_wait: float = field(default=DEFAULT_MAX_WAIT, metadata={
        "help": "a question expected to wait longer than this for the reader (the questions "
                "ahead of it times the measured answer time) is refused at once with 503 and "
                "Retry-After; at most --deadline", "metavar": "SECONDS"})
    deadline: float = field(default=DEFAULT_DEADLINE, metadata={
        "help": "a question not answered in this time, queueing included, gets 504",
        "metavar": "SECONDS"})
    allowed_hosts: list[str] = field(default_factory=list, metadata={
        "help": "Host header names to answer besides localhost, 127.0.0.1, ::1 and --host "
                "(\"*\": any); other names get 421, which stops DNS rebinding (default: none)",
        "metavar": "NAME"})
    api_key: str | None = field(default=None, metadata={
        "help": "required as 'Authorization: Bearer KEY' to add or remove documents; "
                "mandatory with a --host other machines reach (default: $KORQA_API_KEY, else "
                "none on loopback)", "metavar": "KEY"})
    threads: int | None = field(default=None, metadata={
        "help": "torch CPU threads", "metavar": "N"})
    log_level: Literal["critical", "error", "warning", "info", "debug"] = field(
        default="info", metadata={"help": "what the server logs"})
    reading: TextReading = field(default_factory=TextReading)  # of --corpus .txt/.md files
