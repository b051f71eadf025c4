"""korqa: Korean question answering — retrieval + a hand-built BERT reader."""

from korqa.version import __version__

__all__ = ["__version__"]
