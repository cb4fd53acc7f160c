"""Issue 15, acceptance 2: every service setting is documented by `--help-all`, with its help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from carme_services.catalog import CatalogService
from carme_services.reconcile import ReconcileService
from carme_services.reservations.service import ReservationService

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("cls", [ReconcileService, CatalogService, ReservationService], ids=lambda c: c.name)
def test_help_all_lists_every_setting_with_its_help(cls):
    out = subprocess.run([sys.executable, "-m", cls.__module__, "--help-all"], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    own = [name for name, trait in cls.class_own_traits(config=True).items()]
    own += ["url", "hub_api_url", "service_prefix"]  # the base's
    assert own
    for name in own:
        trait = cls.class_traits()[name]
        owner = next(k.__name__ for k in cls.mro() if name in getattr(k, "class_own_traits", lambda **kw: {})(config=True))
        assert f"--{owner}.{name}=" in out, name
        first_words = " ".join(trait.help.split()[:4])
        assert first_words in " ".join(out.split()), (name, first_words)
