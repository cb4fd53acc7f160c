"""Issue 15, acceptance 4: a form on a service page POSTs in the browser (the catalog's "add your
own image" form, for a power user), and the same POST without the page's XSRF token is refused
with 403 and changes nothing."""

from __future__ import annotations

import re

import pytest

from tests.integration.conftest import running_hub

from .conftest import login

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hub(cluster):
    with running_hub(ports=(18500, 18581, 18501)) as hub:
        hub.ensure_user("dave")
        # the hub's own groups decide roles: dave is a power user by the group 'power'
        r = hub.session.post(f"{hub.api}/groups/power", json={"users": ["dave"]})
        if r.status_code == 409:
            r = hub.session.post(f"{hub.api}/groups/power/users", json={"users": ["dave"]})
        r.raise_for_status()
        yield hub


def catalog_url(hub) -> str:
    return f"{hub.url}/services/carme-catalog/"


def test_a_power_user_adds_an_image_through_the_page_form_and_a_forged_post_is_refused(hub, page):
    login(page, hub, "dave")

    page.goto(catalog_url(hub))  # OAuth with the hub, then the page
    page.wait_for_selector("#add-image-form")
    assert page.input_value("#add-image-form input[name=_xsrf]"), "the page carries no XSRF token"
    page.fill("#image-id", "daves-torch")
    page.fill("#image-name", "Dave's PyTorch")
    page.fill("#image-ref", "/opt/carme/images/pytorch-gpu.sif")
    page.select_option("#image-gpu", "required")
    page.artifact("add-image-form")
    page.click("#add-image-form button[type=submit]")
    page.wait_for_url(re.compile(r".*added=daves-torch.*"))
    assert "daves-torch" in page.inner_text("#catalog-added")
    assert page.locator('#catalog-table tr[data-id="daves-torch"]').count() == 1
    page.artifact("image-added")

    # the same POST with the same session cookies but without the token: 403, nothing stored
    forged = page.request.post(catalog_url(hub), form={
        "id": "forged", "name": "Forged", "image": "/opt/carme/images/python-cpu.sif", "gpu": "optional"},
        max_redirects=0)
    assert forged.status == 403, (forged.status, forged.text()[:300])
    with_token = page.request.post(catalog_url(hub), max_redirects=0, form={
        "_xsrf": page.input_value("#add-image-form input[name=_xsrf]"),
        "id": "second", "name": "Second", "image": "/opt/carme/images/python-cpu.sif", "gpu": "optional"})
    assert with_token.status == 302, (with_token.status, with_token.text()[:300])
    images = {e["id"] for e in hub.session.get(f"{catalog_url(hub)}api/images",
                                                headers={"Authorization": f"token {hub.user_token('dave')}"}).json()["images"]}
    assert {"daves-torch", "second"} <= images and "forged" not in images
