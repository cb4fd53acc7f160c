"""Issue 22, HTTPS (acceptance 6): the hub on TLS in a real browser.

A real JupyterHub + configurable-http-proxy on https (CarmeTLS, certificate from a test CA that
dev/tls.sh makes in a temp dir), LDAP login against the dev slapd. Chromium trusts that CA through
a fresh NSS database (certutil) under a HOME of its own: no --ignore-certificate-errors. The
suite's ordinary chromium, which does not know the CA, must refuse the same page.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.integration import ldap_directory as ldap
from tests.integration.conftest import running_hub
from tests.integration.hub import REPO

pytestmark = pytest.mark.integration

TLS_HUB_PORTS = (20300, 20381, 20301)  # helper-19's range; the hub's services take public + 2..9
TLS_JOB_PREFIX = "carme-https-"
CA_NAME = "Carme dev HTTPS CA"


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("https") / "tls"
    r = subprocess.run(["bash", str(REPO / "dev" / "tls.sh"), str(directory)], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        pytest.fail(f"dev/tls.sh failed:\n{r.stderr}", pytrace=False)
    return directory


@pytest.fixture(scope="module")
def hub(cluster, tls_dir):
    ldap.script("up")
    env = {**ldap.LDAP_HUB_ENV, "CARME__CarmeTLS__hsts_max_age": "600"}
    with running_hub(ports=TLS_HUB_PORTS, job_prefix=TLS_JOB_PREFIX, extra_env=env, tls_dir=tls_dir) as hub:
        assert hub.url.startswith("https://")
        yield hub


@pytest.fixture(scope="module")
def trusting_browser(playwright, tls_dir, tmp_path_factory):
    """Chromium whose NSS database (under its own HOME) trusts the test CA for servers."""
    home = tmp_path_factory.mktemp("chromium-home")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    for argv in (["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"],
                 ["certutil", "-d", f"sql:{nssdb}", "-A", "-n", CA_NAME, "-t", "C,,", "-i", str(tls_dir / "ca.crt")]):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            pytest.fail("certutil is missing: run `make test` or `bash dev/install.sh --chromium` (libnss3-tools)",
                        pytrace=False)
        if r.returncode != 0:
            pytest.fail(f"{' '.join(argv)} failed:\n{r.stdout}{r.stderr}", pytrace=False)
    env = {**os.environ, "HOME": str(home)}
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, env=env)
    yield browser
    browser.close()


@pytest.fixture
def tls_page(trusting_browser, request):
    from tests.browser.conftest import ARTIFACTS, artifact_name

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = trusting_browser.new_context(viewport={"width": 1280, "height": 900})  # ignore_https_errors: False
    context.set_default_timeout(30_000)
    page = context.new_page()
    name = artifact_name(request.node.name)
    page.artifact = lambda step: page.screenshot(path=str(ARTIFACTS / f"{name}--{artifact_name(step)}.png"),
                                                 full_page=True)
    try:
        yield page
    finally:
        try:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        finally:
            context.close()


def test_alice_logs_in_over_https_with_a_secure_cookie_and_hsts(tls_page, hub):
    page = tls_page
    response = page.goto(f"{hub.url}/hub/login")
    assert response.ok and page.url.startswith("https://127.0.0.1:")
    details = response.security_details()  # what chromium negotiated and verified against the test CA
    assert details and details["protocol"].startswith("TLS 1."), details
    assert details["issuer"].startswith(CA_NAME), details
    assert response.headers["strict-transport-security"] == "max-age=600"
    page.fill("#username_input", "alice")
    page.fill("#password_input", ldap.passwords()["alice"])
    with page.expect_response(re.compile(r".*/hub/spawn.*")) as spawn:
        page.click("#login_submit")
    page.wait_for_url("**/hub/spawn**")
    assert page.url.startswith("https://")
    expect(page.locator("h1")).to_contain_text("Server Options")
    assert spawn.value.headers["strict-transport-security"] == "max-age=600"
    page.artifact("spawn page over https")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert "jupyterhub-session-id" in cookies and "jupyterhub-hub-login" in cookies, cookies
    for name in ("jupyterhub-session-id", "jupyterhub-hub-login", "_xsrf"):
        if name in cookies:
            assert cookies[name]["secure"] is True, cookies[name]
    assert cookies["jupyterhub-hub-login"]["httpOnly"] is True


def test_a_browser_without_the_test_ca_refuses_the_hub(page, hub):
    """The suite's ordinary chromium (no NSS db with the CA): the certificate is what made the login work."""
    with pytest.raises(PlaywrightError, match="ERR_CERT_AUTHORITY_INVALID"):
        page.goto(f"{hub.url}/hub/login")


def test_plain_http_on_the_hub_port_gets_no_login_page(tls_page, hub):
    plain = f"http://127.0.0.1:{hub.public_port}/hub/login"
    try:
        r = requests.get(plain, timeout=15, allow_redirects=False)
    except requests.ConnectionError:
        pass  # the TLS proxy hung up on the plain request: no page
    else:
        assert r.status_code >= 400, (r.status_code, r.text[:300])
        assert "password" not in r.text.lower() and "_xsrf" not in r.text, r.text[:300]
    page = tls_page
    try:
        response = page.goto(plain)
    except PlaywrightError as e:  # e.g. net::ERR_EMPTY_RESPONSE
        assert "net::ERR_" in str(e), e
    else:
        assert not page.url.startswith("https://"), page.url  # not upgraded to the TLS page behind our back
        assert response is None or response.status >= 400, response and response.status
        assert page.locator("#password_input").count() == 0
    page.artifact("plain http")
    # and over https the same port serves the login form (the refusal above is about the scheme, not the hub)
    r = requests.get(f"{hub.url}/hub/login", verify=str(hub.tls_dir / "ca.crt"), timeout=15)
    assert r.status_code == 200 and 'name="password"' in r.text
