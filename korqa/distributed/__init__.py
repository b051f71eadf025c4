"""korqa on a Ray cluster: replicated serving (Ray Serve) and parallel indexing (Ray Data).

Optional: `pip install -e '.[ray]'`. Only `korqa serve --ray` and `korqa index --ray` import this
package's submodules, and they import `ray`; the default, embedded path never does.
"""

from __future__ import annotations

import importlib.util

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
