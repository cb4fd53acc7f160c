"""The announcements store's Alembic environment: online migrations on the service's engine (carme_core.db)."""

from alembic import context

from carme_core.db import run_migrations

run_migrations(context)
