"""Issue 16, finding 2: the login throttle counts the address the trusted proxy saw."""

from __future__ import annotations

from carme_auth.address import client_address


def test_the_right_most_hop_the_trusted_proxy_appended():
    # the client wrote "203.0.113.9"; configurable-http-proxy appended what it saw
    assert client_address("127.0.0.1", ["203.0.113.9, 10.0.0.5"], None, trusted_hops=1) == "10.0.0.5"
    assert client_address("127.0.0.1", ["203.0.113.9", "10.0.0.5"], None, trusted_hops=1) == "10.0.0.5"
    # two trusted proxies (nginx, then CHP): the client is two hops from the right
    assert client_address("127.0.0.1", ["6.6.6.6, 10.0.0.5, 192.168.1.1"], None, trusted_hops=2) == "10.0.0.5"


def test_x_real_ip_is_ignored_unless_the_site_says_its_proxy_sets_it():
    assert client_address("127.0.0.1", ["10.0.0.5"], "198.51.100.7", trusted_hops=1) == "10.0.0.5"
    assert client_address("127.0.0.1", ["10.0.0.5"], "198.51.100.7", 1, trust_x_real_ip=True) == "198.51.100.7"


def test_headers_from_anyone_but_a_trusted_proxy_count_for_nothing():
    """A job on a compute node reaching the hub's port directly is counted as itself."""
    assert client_address("10.1.2.3", ["198.51.100.1"], "198.51.100.2", trusted_hops=1,
                          trust_x_real_ip=True) == "10.1.2.3"


def test_without_the_header_the_peer_is_the_client():
    assert client_address("127.0.0.1", [], None, trusted_hops=1) == "127.0.0.1"
    assert client_address("127.0.0.1", ["10.0.0.5"], None, trusted_hops=0) == "127.0.0.1"
