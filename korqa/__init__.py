"""korqa: Korean question answering — retrieval + a hand-built BERT reader."""

__version__ = "0.1.0"
