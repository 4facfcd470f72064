"""The keys under which a client is counted: digests, so a hostile megabyte-long name costs a few
dozen bytes of storage and no email address is stored in clear."""

from __future__ import annotations

import hashlib
import ipaddress

__all__ = ["address_key", "digest"]


def digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def address_key(address: str) -> str:
    # One IPv6 subscriber usually holds a whole /64: count the prefix, not each address in it.
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return digest(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        return digest(str(ipaddress.ip_network(f"{ip}/64", strict=False)))
    return digest(str(ip))
