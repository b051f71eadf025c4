"""What `korqa serve` settles before the app runs: the index it serves, the port, the Host
names it answers for, and hypercorn's timeouts."""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from korqa.corpus.text import TextReading
from korqa.retrieval.index import STORE_FILE
from korqa.server.config import DEFAULT_DEADLINE
from korqa.server.middleware import BODY_TIMEOUT, host_name

DEFAULT_DATA_DIR = Path("~/.local/share/korqa/server")
API_KEY_ENV = "KORQA_API_KEY"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
HEADER_TIMEOUT = 5  # seconds a connection may take to send its request headers


def prepare_index(index: str | Path | None, corpus: Sequence[str | Path],
                  data_dir: Path, reading: TextReading | None = None) -> Path:
    """The index directory the server answers from and adds documents to.

    `index` is used in place. Otherwise the server keeps its own copy in `data_dir/index`
    (added documents must not go into the shared cache, which mirrors a corpus): made from
    the cached index of `corpus` (or of the sample corpus) on first start, and brought up to
    date with `corpus` when its files change (`build_index`); documents added through the API
    stay.
    """
    from korqa.paths import sample_corpus_path
    from korqa.pipeline.sources import cached_index, corpus_fingerprint
    from korqa.retrieval.index import build_index, saved_retriever
    from korqa.retrieval.verify import verify_index

    if index:
        if corpus:
            raise ValueError("give either an index directory or corpus paths, not both")
        return Path(index)
    paths = [str(Path(p).resolve()) for p in corpus] or [str(sample_corpus_path())]
    fingerprint = corpus_fingerprint(paths, reading)
    target = data_dir / "index"
    marker = target / "server-corpus.json"
    if not (target / STORE_FILE).is_file():
        staging = data_dir / "index.copying"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(cached_index(paths, reading=reading), staging)
        verify_index(staging)  # a copy is where a file goes bad unseen: hash it once here
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    else:
        known = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else {}
        if known.get("fingerprint") != fingerprint:
            build_index(target, paths, saved_retriever(target), progress=False,
                        reading=reading)
    marker.write_text(json.dumps({"fingerprint": fingerprint, "paths": paths},
                                 ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return target


def server_config(host: str, port: int, log_level: str = "info",
                  deadline: float = DEFAULT_DEADLINE) -> Any:  # a hypercorn Config
    """Hypercorn, not uvicorn: it closes a connection that has not finished its request
    headers within HEADER_TIMEOUT, where uvicorn holds a slowloris client forever (BodyLimit
    bounds a trickled body)."""
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.keep_alive_timeout = HEADER_TIMEOUT  # idle, or still sending its headers
    # Nothing at all arrived for this long. A client waiting for its answer is silent too, so
    # this must outlast a question's deadline (else its connection is cut before the 504);
    # headers are bounded by the idle timeout above and bodies by BodyLimit.
    config.read_timeout = max(BODY_TIMEOUT, deadline) + HEADER_TIMEOUT
    config.loglevel = log_level.upper()
    return config


def allowed_host_names(host: str, extra: Sequence[str]) -> list[str] | None:
    """The Host names `korqa serve --host HOST` answers for: loopback's, HOST itself (unless
    it is a wildcard address), and `extra`; None (any) when `extra` holds "*"."""
    if "*" in extra:
        return None
    names = [*LOOPBACK_NAMES, *(host_name(name) for name in extra)]
    if host not in ("0.0.0.0", "::", ""):
        names.append(host_name(host))
    return names


def check_port(host: str, port: int) -> None:
    """ValueError naming the port and --port when `host:port` cannot be listened on (in use,
    no permission, no such address). Binds the way the server will, then lets go."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ValueError(f"port {port} on {host} is in use; stop what uses it or "
                                 "choose another port with --port") from None
            raise ValueError(f"cannot listen on {host} port {port} ({error.strerror or error}); "
                             "check --host and --port") from None
        except OverflowError:
            raise ValueError(f"--port {port}: a port is a number from 0 to 65535") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_key_of(host: str, api_key: str | None) -> str | None:
    """The key writes need: `api_key`, else $KORQA_API_KEY; ValueError when `host` is
    reachable from other machines and there is none."""
    key = api_key or os.environ.get(API_KEY_ENV) or None
    if not is_loopback(host) and key is None:
        raise ValueError(f"--host {host} is reachable from other machines: give --api-key KEY "
                         f"(or set {API_KEY_ENV}) so that only you can add and remove "
                         "documents")
    return key
