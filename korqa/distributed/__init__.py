"""korqa on a Ray cluster: replicated serving (Ray Serve) and parallel indexing (Ray Data).

Optional: `pip install -e '.[ray]'`. Only `korqa serve --ray` and `korqa index --ray` import this
package's submodules, and they import `ray`; the default, embedded path never does.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field

from korqa.extras import install_command, install_hint

INSTALL_COMMAND = install_command("ray")
INSTALL_HINT = install_hint("ray")


class RayMissing(ValueError):
    """A Ray option was given but the `ray` extra is not installed."""


def require_ray(option: str, parts: tuple[str, ...] = ("ray", "ray.serve", "ray.data")) -> None:
    """Raise RayMissing, naming `option` and the pip command, unless `parts` can be imported.

    Checked with find_spec, so nothing is imported here."""
    for name in parts:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package missing, or a stubbed-out module
            found = False
        if not found:
            raise RayMissing(f"{option} needs Ray ({name} is not installed): {INSTALL_HINT}")


@dataclass(kw_only=True)
class RayCluster:
    """Whether a command runs on Ray, and on which cluster (its "help" is the command line's,
    korqa.cli_options)."""

    ray: bool = field(default=False, metadata={
        "help": "run on a Ray cluster (needs the extra: pip install -e '.[ray]')"})
    ray_address: str | None = field(default=None, metadata={
        "help": "with --ray: the cluster to join, `auto` (the one `ray start` made on this "
                "machine) or ray://HOST:PORT (default: start a local one)",
        "metavar": "ADDRESS"})


@dataclass(kw_only=True)
class RayIndexing(RayCluster):
    """`korqa index --ray`."""

    workers: int = field(default=2, metadata={
        "help": "with --ray: parallel workers for term analysis and dense encoding (default "
                "2); the index is the one a single process builds", "metavar": "N"})


@dataclass(kw_only=True)
class RayServing(RayCluster):
    """`korqa serve --ray`."""

    replicas: int = field(default=1, metadata={
        "help": "with --ray: reader replicas, each with its share of --threads", "metavar": "N"})


def indexer(options: RayIndexing) -> Callable[..., None] | None:
    """What indexes a store on Ray as `options` ask (`korqa.retrieval.index.Indexer`), or None
    to index in this process."""
    if not options.ray:
        return None
    require_ray("korqa index --ray")
    from korqa.distributed.index import ray_indexer

    return ray_indexer(options.workers, options.ray_address)
