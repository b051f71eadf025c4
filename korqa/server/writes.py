"""Where the server's writes go: documents, feedback and /health, behind the routes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from starlette.concurrency import run_in_threadpool

from korqa.corpus.paragraph import Paragraph
from korqa.server.engine import Engine, NoIndex
from korqa.server.feedback import Feedback, FeedbackFull, FeedbackStore
from korqa.server.middleware import ApiError
from korqa.server.schemas import ErrorOut


class Writes:
    """What the document, feedback and health routes do: in this process, through the engine's
    writer thread and the feedback store. `korqa serve --ray` subclasses it to send writes to
    its single writer actor; the routes, their validation and their API key stay create_app's.
    """

    # Responses the writes add to the routes' own, for the OpenAPI schema.
    errors: dict[int | str, dict[str, Any]] = {
        409: {"model": ErrorOut}, 503: {"model": ErrorOut}, 507: {"model": ErrorOut}}

    def __init__(self, engine: Engine, feedback: FeedbackStore) -> None:
        self.engine = engine
        self.feedback = feedback

    async def add_paragraphs(self, paragraphs: list[Paragraph]) -> dict[str, Any]:
        """Store the paragraphs (each document replacing its own) and reindex."""
        return await self._write(lambda: self.engine.add_paragraphs(paragraphs))

    async def remove_documents(self, doc_ids: list[str]) -> dict[str, Any]:
        """Delete whole documents and reindex; KeyError (nothing changed) for an unknown id."""
        return await self._write(lambda: self.engine.remove_documents(doc_ids))

    async def _write(self, submit: Callable[[], Future]) -> dict[str, Any]:
        try:
            future = submit()
        except NoIndex as error:
            raise ApiError(409, str(error)) from None
        # Once accepted, a write is carried out even if its client goes away.
        return await asyncio.shield(asyncio.wrap_future(future))

    async def add_feedback(self, item: Feedback) -> int:
        try:
            return await run_in_threadpool(self.feedback.add, item)
        except FeedbackFull as error:
            raise ApiError(503, f"feedback is full: {error}") from None

    async def health(self) -> dict[str, Any]:
        return {**self.engine.health(),
                "feedback": await run_in_threadpool(len, self.feedback)}
