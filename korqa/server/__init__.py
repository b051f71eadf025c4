"""`korqa serve`: an HTTP API and a web chat page over the QA pipeline, and user feedback."""

from korqa.server.app import ServerConfig, create_app, prepare_index, serve
from korqa.server.engine import Busy, Engine
from korqa.server.feedback import Feedback, FeedbackStore, export_squad

__all__ = [
    "Busy",
    "Engine",
    "Feedback",
    "FeedbackStore",
    "ServerConfig",
    "create_app",
    "export_squad",
    "prepare_index",
    "serve",
]
