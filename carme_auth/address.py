"""The client address of a login, as the hub's trusted proxy saw it (pure).

JupyterHub runs tornado with `xheaders`, so `request.remote_ip` is whatever the client put into
`X-Real-Ip` (configurable-http-proxy passes that header through untouched): a client can pose as
any address. Each trusted proxy in front of the hub APPENDS the address it saw to
`X-Forwarded-For`, so with `trusted_hops` proxies (configurable-http-proxy alone: 1) the client
is the entry that many places from the right; entries further left are the client's own words.
Without the header, the socket's peer is the client. Headers count only when the peer IS a
trusted proxy (`trusted_proxies`): a job on a compute node that reaches the hub's own port
directly is counted as itself, whatever it writes. `X-Real-Ip` counts only when a site says its
proxy sets it (`trust_x_real_ip`).
"""

from __future__ import annotations


def client_address(peer: str, forwarded_for: list[str], real_ip: str | None, trusted_hops: int,
                   trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1"), trust_x_real_ip: bool = False) -> str:
    """The address to count failures against."""
    if peer not in trusted_proxies:
        return peer
    if trust_x_real_ip and real_ip and real_ip.strip():
        return real_ip.strip()
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    if trusted_hops <= 0 or not hops:
        return peer
    return hops[-min(trusted_hops, len(hops))]


def request_address(request, trusted_hops: int, trusted_proxies: tuple[str, ...],
                    trust_x_real_ip: bool = False) -> str | None:
    """`client_address` of a tornado request (the socket peer, not the xheaders' remote_ip)."""
    if request is None:
        return None
    context = getattr(getattr(request, "connection", None), "context", None)
    address = getattr(context, "address", None)
    peer = address[0] if isinstance(address, tuple) and address else str(request.remote_ip or "")
    headers = getattr(request, "headers", None)
    forwarded = headers.get_list("X-Forwarded-For") if hasattr(headers, "get_list") else []
    return client_address(peer, forwarded, headers.get("X-Real-Ip") if headers is not None else None,
                          trusted_hops, tuple(trusted_proxies), trust_x_real_ip)
