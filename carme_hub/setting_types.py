"""A setting's value against its traitlet's type, when the hub starts."""

from __future__ import annotations

from traitlets import TraitError


def check_type(trait, where: str, value) -> None:
    """Stop the hub now if `value` is not of the setting's type: a spawner is made per spawn, and a wrong
    type there would fail every user's spawn with a 500, not the hub's start. (A setting's own
    @validate needs an instance: those run when the class is made, at start for the hub's own.)"""
    if value is None and trait.allow_none:
        return
    try:
        trait.validate(None, value)
    except TraitError as e:
        raise SystemExit(f"{where}: {e}") from None
    except Exception:  # noqa: BLE001 - a trait whose type check needs its instance: checked when made
        pass

