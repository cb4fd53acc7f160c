"""A setting's value against its traitlet's type, when the hub starts."""

from __future__ import annotations

import copy

from traitlets import HasTraits, TraitError


def check_type(section: str, name: str, trait, where: str, value) -> None:
    """Stop the hub now if `value` is not what setting `section.name` takes: a spawner is made per spawn,
    and a wrong type there would fail every user's spawn with a 500, not the hub's start. The value is
    set on a throwaway object with a copy of the trait, so it is taken as traitlets takes it (a lone
    string for a list, element types, unions); a class's own @validate runs when the class is made."""
    probe = type(section, (HasTraits,), {name: copy.deepcopy(trait)})()
    try:
        setattr(probe, name, value)
    except TraitError as e:
        raise SystemExit(f"{where}: {e}") from None
    except Exception:  # noqa: BLE001 - a trait that cannot be checked apart from its class: checked when made
        pass
