"""Issue 22, HTTPS: the CarmeTLS settings -> the hub's config (proxy cert and key, Secure cookies, HSTS),
the errors naming the setting, and dev/tls.sh's CA and server certificate (names, modes, idempotence)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from tests.unit.test_site_settings import load

REPO = Path(__file__).resolve().parents[2]
TLS_SCRIPT = REPO / "dev" / "tls.sh"
ONE_YEAR = "max-age=31536000"


def make_certs(directory: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(TLS_SCRIPT), str(directory)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tls") / "tls"
    r = make_certs(directory)
    assert r.returncode == 0, r.stderr
    return directory


def tls_env(certs: Path, **more) -> dict:
    return {"CARME__CarmeTLS__cert": str(certs / "server.crt"), "CARME__CarmeTLS__key": str(certs / "server.key"),
            **more}


# ---- settings -> hub config --------------------------------------------------------------------------


def test_without_tls_settings_the_hub_stays_plain_http(monkeypatch, tmp_path):
    c = load(monkeypatch, tmp_path)
    assert not c.JupyterHub.get("ssl_cert") and not c.JupyterHub.get("ssl_key")
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8000"
    assert "Strict-Transport-Security" not in (c.JupyterHub.get("tornado_settings") or {}).get("headers", {})


def test_cert_and_key_go_to_the_proxy_with_secure_cookies_and_hsts(monkeypatch, tmp_path, certs):
    c = load(monkeypatch, tmp_path, **tls_env(certs))
    assert c.JupyterHub.ssl_cert == str(certs / "server.crt")  # configurable-http-proxy --ssl-cert
    assert c.JupyterHub.ssl_key == str(certs / "server.key")
    assert c.JupyterHub.bind_url == "https://127.0.0.1:8000"
    settings = c.JupyterHub.tornado_settings
    assert settings["cookie_options"]["secure"] is True  # the hub's, _xsrf, and the servers' (JUPYTERHUB_COOKIE_OPTIONS)
    assert settings["headers"]["Strict-Transport-Security"] == ONE_YEAR


def test_hsts_age_subdomains_and_off(monkeypatch, tmp_path, certs):
    c = load(monkeypatch, tmp_path, **tls_env(certs, CARME__CarmeTLS__hsts_max_age="600",
                                               CARME__CarmeTLS__hsts_include_subdomains="true"))
    assert c.JupyterHub.tornado_settings["headers"]["Strict-Transport-Security"] == "max-age=600; includeSubDomains"
    c = load(monkeypatch, tmp_path, **tls_env(certs, CARME__CarmeTLS__hsts_max_age="0"))
    assert "Strict-Transport-Security" not in c.JupyterHub.tornado_settings.get("headers", {})
    assert c.JupyterHub.tornado_settings["cookie_options"]["secure"] is True


def test_the_sites_own_tornado_settings_are_kept(monkeypatch, tmp_path, certs):
    settings = (
        f"carme:\n  authenticator: dummy\n  state_dir: {tmp_path / 'state'}\n"
        "JupyterHub:\n  bind_url: http://10.0.0.1:443\n"
        "  tornado_settings: {headers: {X-Frame-Options: DENY}, cookie_options: {samesite: Strict}}\n"
        f"CarmeTLS:\n  cert: {certs / 'server.crt'}\n  key: {certs / 'server.key'}\n  hsts_max_age: 86400\n"
    )
    c = load(monkeypatch, tmp_path, settings)
    assert c.JupyterHub.bind_url == "https://10.0.0.1:443"
    assert c.JupyterHub.tornado_settings["headers"] == {"X-Frame-Options": "DENY",
                                                        "Strict-Transport-Security": "max-age=86400"}
    assert c.JupyterHub.tornado_settings["cookie_options"] == {"samesite": "Strict", "secure": True}


# ---- bad settings stop the hub, naming the setting --------------------------------------------------


@pytest.fixture
def bad(tmp_path, certs) -> Path:
    """Copies of the good files, to spoil one by one."""
    directory = tmp_path / "bad"
    shutil.copytree(certs, directory)
    return directory


@pytest.mark.parametrize(
    "spoil, env, words",
    [
        (None, {"CARME__CarmeTLS__key": ""}, "CarmeTLS.key is empty but CarmeTLS.cert is set"),
        (None, {"CARME__CarmeTLS__cert": ""}, "CarmeTLS.cert is empty but CarmeTLS.key is set"),
        (lambda d: (d / "server.crt").unlink(), {}, "CarmeTLS.cert: {d}/server.crt: No such file or directory"),
        (lambda d: (d / "server.key").unlink(), {}, "CarmeTLS.key: {d}/server.key: No such file or directory"),
        (lambda d: (d / "server.key").chmod(0o644), {}, "CarmeTLS.key: {d}/server.key is readable by group or others"),
        (lambda d: (d / "server.key").chmod(0o640), {}, "(mode 0640); chmod 0600 it"),
        (lambda d: (d / "server.crt").write_text("not a certificate\n"), {},
         "CarmeTLS.cert: {d}/server.crt is not a PEM certificate"),
        (lambda d: (d / "server.key").write_text("not a key\n"), {},
         "CarmeTLS.key: {d}/server.key is not an unencrypted PEM private key"),
        (lambda d: shutil.copy(d / "ca.key", d / "server.key"), {},
         "CarmeTLS.key: {d}/server.key is not the private key of CarmeTLS.cert {d}/server.crt"),
        (None, {"CARME__CarmeTLS__cert": "server.crt"}, "CarmeTLS.cert: 'server.crt' must be an absolute path"),
        (None, {"CARME__CarmeTLS__hsts_max_age": "-1"}, "CarmeTLS.hsts_max_age must be 0 or more seconds"),
        (None, {"CARME__CarmeTLS__hsts_max_age": "a year"}, "'hsts_max_age' trait of a CarmeTLS instance expected an int"),
        (None, {"CARME__CarmeTLS__certificate": "/x"}, "CarmeTLS has no setting 'certificate'"),
        (None, {"CARME__JupyterHub__ssl_cert": "/etc/other.crt"}, "JupyterHub.ssl_cert (/etc/other.crt) and CarmeTLS"),
    ],
)
def test_bad_tls_settings_stop_the_hub_naming_the_setting(monkeypatch, tmp_path, bad, spoil, env, words):
    if spoil:
        spoil(bad)
    with pytest.raises(SystemExit) as e:
        load(monkeypatch, tmp_path, **{**tls_env(bad), **env})
    assert words.format(d=bad) in str(e.value)


# ---- dev/tls.sh ----------------------------------------------------------------------------------------


def names_of(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {f"DNS:{n}" for n in san.get_values_for_type(x509.DNSName)} | {
        f"IP:{a}" for a in san.get_values_for_type(x509.IPAddress)}


def test_dev_tls_makes_a_ca_and_a_server_certificate_for_this_host(certs):
    assert certs.stat().st_mode & 0o777 == 0o700
    modes = {p.name: p.stat().st_mode & 0o777 for p in certs.iterdir()}
    assert modes == {"ca.crt": 0o644, "ca.key": 0o600, "server.crt": 0o644, "server.key": 0o600}
    ca = x509.load_pem_x509_certificate((certs / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((certs / "server.crt").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert server.issuer == ca.subject
    server.verify_directly_issued_by(ca)  # signed by that CA (raises otherwise)
    assert {"IP:127.0.0.1", "DNS:localhost", f"DNS:{socket.gethostname()}"} <= names_of(server)
    assert ipaddress.ip_address("127.0.0.1") in server.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage


def test_dev_tls_is_idempotent_and_adds_names_with_the_same_ca(tmp_path):
    directory = tmp_path / "tls"
    assert make_certs(directory).returncode == 0
    first = {p.name: p.read_bytes() for p in directory.iterdir()}
    r = make_certs(directory)
    assert r.returncode == 0 and r.stderr == ""  # nothing made again
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == first
    r = make_certs(directory, CARME_TLS_NAMES="DNS:hub.example.org,IP:10.0.0.5")
    assert r.returncode == 0, r.stderr
    assert (directory / "ca.key").read_bytes() == first["ca.key"]  # the CA a browser trusts stays
    server = x509.load_pem_x509_certificate((directory / "server.crt").read_bytes())
    assert {"DNS:hub.example.org", "IP:10.0.0.5", "IP:127.0.0.1"} <= names_of(server)
    assert (directory / "server.key").stat().st_mode & 0o777 == 0o600


def test_dev_tls_refuses_a_bad_name(tmp_path):
    r = make_certs(tmp_path / "tls", CARME_TLS_NAMES="hub.example.org")
    assert r.returncode != 0
    assert "CARME_TLS_NAMES: 'hub.example.org' is not DNS:<name> or IP:<address>" in r.stderr
    assert not (tmp_path / "tls" / "ca.key").exists()


def test_the_demo_switch_runs_the_hub_on_the_dev_ca(tmp_path):
    r = subprocess.run(["make", "-n", "-C", str(REPO), "demo", "TLS=1"], capture_output=True, text=True)
    assert "CARME_TLS=1 bash dev/demo.sh" in r.stdout
    r = subprocess.run(["make", "-n", "-C", str(REPO), "demo"], capture_output=True, text=True)
    assert "CARME_TLS=0 bash dev/demo.sh" in r.stdout
    demo = (REPO / "dev" / "demo.sh").read_text()
    assert 'dev/tls.sh" "$STATE/tls"' in demo and "CARME__CarmeTLS__cert=$STATE/tls/server.crt" in demo
