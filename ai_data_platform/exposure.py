"""Whether a listening address reaches beyond this machine.

The platform's HTTP services (``adp serve``, the Dagster UI) have no authentication of their own:
bound to a loopback address (127.0.0.0/8, ::1, ``localhost``) only this machine reaches them;
bound to anything else (``0.0.0.0``, ``::``, a host name, an interface address) the network does.
"""

from __future__ import annotations

import ipaddress

from ai_data_platform.errors import shown

LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (also written ``[::1]`` or IPv4-mapped) and ``localhost``;
    False for everything else, including names that cannot be judged without resolving them."""
    text = host.strip().lower()
    if text in LOOPBACK_NAMES:
        return True
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def exposure_warning(host: str, service: str) -> str | None:
    """A one-line warning when ``service`` listening on ``host`` is reachable beyond this machine."""
    if is_loopback(host):
        return None
    return (
        f"warning: listening on {shown(host)} exposes {service} beyond this machine, without authentication; "
        "bind to 127.0.0.1 unless an authenticating proxy or firewall stands in front of it"
    )
