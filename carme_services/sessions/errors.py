"""carme-sessions' refusals, with their HTTP status (a module of their own: the service runs as
`python -m carme_services.sessions.service`, and its handlers must catch the same classes)."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input (HTTP 400); .field names the field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class SessionError(Exception):
    """A refusal with its HTTP status; `limit` names the limit of a quota refusal (403)."""

    def __init__(self, status: int, message: str, limit: str = ""):
        super().__init__(message)
        self.status, self.message, self.limit = status, message, limit
