"""korqa: Korean question answering — retrieval + a hand-built BERT reader.

From Python (the README's "Python" section):

    import korqa

    with korqa.open_pipeline() as pipeline:  # the sample corpus and the shipped reader
        answer = pipeline.ask("한라산의 높이는 얼마인가?")
    print(answer.answer, answer.score, answer.title)

These names are imported on first use (PEP 562), so `import korqa` stays fast: the command
line and the modules underneath import only what they use.
"""

from korqa.lazy import lazy_exports
from korqa.version import __version__

_names, __getattr__ = lazy_exports(__name__, {
    "pipeline.sources": ("open_pipeline",),
    "pipeline.answers": ("Answer",),
    "pipeline.qa": ("PipelineConfig", "QAPipeline"),
})
__all__ = ["__version__", *_names]
