"""The IP address a request goes to, for rules that match by address (network disruption of a
subnet: a prefix list's CIDRs, the VPC's, the subnet's own).

An IP literal is its own address. A host name is resolved with the event loop's `getaddrinfo`
(a thread of the loop's executor, as mitmproxy itself resolves to connect): the request waits, the
loop does not. Answers are kept `TTL_SECONDS` in a bounded cache; a name that does not resolve is
remembered as None for as long (it then counts as outside every network). Only asked while such a
rule is in force.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections import OrderedDict

TTL_SECONDS = 30.0
MAX_ENTRIES = 1024
LOOKUP_SECONDS = 2.0


def literal(host: str) -> str | None:
    """`host` if it is an IP address (brackets and zone ids allowed), else None."""
    try:
        return str(ipaddress.ip_address(host.strip("[]").split("%", 1)[0]))
    except ValueError:
        return None


class Resolver:
    def __init__(self) -> None:
        self._cache: OrderedDict[str, tuple[float, str | None]] = OrderedDict()

    def known(self, host: str) -> tuple[bool, str | None]:
        """(True, address or None) if `host` is a literal or cached, else (False, None)."""
        address = literal(host)
        if address is not None:
            return True, address
        hit = self._cache.get(host.lower())
        if hit is not None and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    async def resolve(self, host: str, port: int) -> str | None:
        """The first address `host` resolves to (None if it does not), cached."""
        known, address = self.known(host)
        if known:
            return address
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(LOOKUP_SECONDS):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            address = str(infos[0][4][0]) if infos else None
        except (OSError, TimeoutError, UnicodeError):
            address = None
        key = host.lower()
        self._cache[key] = (time.monotonic() + TTL_SECONDS, address)
        self._cache.move_to_end(key)
        while len(self._cache) > MAX_ENTRIES:
            self._cache.popitem(last=False)
        return address
