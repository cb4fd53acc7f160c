"""carme-cockpit's refusals with their HTTP status (a module of their own: the service runs as
`python -m carme_services.cockpit.service`, and its handlers must catch the same classes)."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input (HTTP 400); .field names the field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class CockpitError(Exception):
    """A refusal or failure with its HTTP status (404 unknown, 409 SLURM or the hub refused, 503 not answering)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message
