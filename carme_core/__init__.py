"""Carme's small shared vocabulary: the roles and how a user's role is decided.

A leaf package: it imports nothing from the rest of Carme, and everything may import it.
`carme_core.db` (SQLAlchemy sessions and Alembic trees for whatever keeps state) is imported on
its own, so importing the roles does not load SQLAlchemy.
"""

from .roles import (
    ADMIN,
    POWER,
    ROLES,
    USER,
    CarmeRoles,
    check_role,
    role_from_hub,
    role_of_model,
)

__all__ = ["ADMIN", "POWER", "ROLES", "USER", "CarmeRoles", "check_role", "role_from_hub", "role_of_model"]
