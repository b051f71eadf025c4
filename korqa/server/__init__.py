"""`korqa serve`: an HTTP API and a web chat page over the QA pipeline, and user feedback.

`app` needs the serve extra (FastAPI, Hypercorn); `engine` and `feedback` do not, so that
`korqa verify --repair` and `korqa feedback export` work without it. Import the submodules.
"""
