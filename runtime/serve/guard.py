"""Which hosts and which web pages may use the service.

Any page the user's browser opens can POST a `text/plain` body to a server on localhost
without a CORS preflight, and a site re-pointed at 127.0.0.1 (DNS rebinding) can read the
answers. So a request must name this server in Host (an IP address: rebinding needs a name;
localhost, the bound address, or `--allowed-host`), and a browser request from a page served
elsewhere needs its origin given with `--allowed-origin` (it then gets CORS headers).
Requests without an Origin header (curl, apps, the seed's clients) pass.
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.responses import JSONResponse

from ..errors import InputError

LOCAL_NAMES = ("localhost",)


def normal_origin(origin: str) -> str:
    """`scheme://host[:port]`, lower case, no path: how browsers write an Origin header."""
    parts = urlsplit(origin.strip())
    if origin.strip() == "*":
        return "*"
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or \
            parts.query or parts.fragment:
        raise InputError(f"--allowed-origin {origin!r}: expected scheme://host[:port], e.g. https://shop.example")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def allowed_host_names(bound_host: str, extra=()) -> tuple[str, ...]:
    """The default names (localhost and the address the server listens on) plus `extra`."""
    extra = [name.strip().lower() for name in extra]
    for name in extra:
        if not name or any(c in name for c in "/:@ ") and not _is_ip(name):
            raise InputError(f"--allowed-host {name!r}: expected a host name such as shop.example (no scheme or port)")
    return tuple(dict.fromkeys([*LOCAL_NAMES, bound_host.strip("[]").lower(), *extra]))


class BrowserGuard:
    """ASGI middleware: the Host and Origin checks above, before anything else runs."""

    def __init__(self, app, allowed_hosts=LOCAL_NAMES, allowed_origins=()):
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.hosts = frozenset(allowed_hosts)
        self.origins = frozenset(allowed_origins)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {name.decode(): value.decode("latin-1") for name, value in scope["headers"]
                   if name in (b"host", b"origin")}
        host = headers.get("host", "")
        refusal = self._host_refusal(host) or self._origin_refusal(headers.get("origin"), host)
        if refusal:
            return await JSONResponse({"detail": refusal[1]}, refusal[0])(scope, receive, send)
        await self.app(scope, receive, send)

    def _host_refusal(self, host: str):
        if not host or self.any_host:  # no Host header: HTTP/1.0, never a browser
            return None
        try:
            name = (urlsplit(f"//{host}").hostname or "").lower()  # without its port and IPv6 brackets
        except ValueError:  # garbled
            name = ""
        if name and (_is_ip(name) or name in self.hosts):
            return None
        return 400, (f"Host {host!r} is not a name this server answers to (allowed: IP addresses, "
                     f"{', '.join(sorted(self.hosts))}); start it with --allowed-host NAME to add one")

    def _origin_refusal(self, origin: str | None, host: str):
        if origin is None or "*" in self.origins:
            return None
        netloc = urlsplit(origin).netloc.lower()
        if origin.lower() in self.origins or (netloc and netloc == host.lower()):
            return None  # allowed, or the page is one this server served (same host and port)
        allow = ("open the page from this server instead" if origin == "null" else  # a local file, a sandbox
                 f"start it with --allowed-origin {origin} to let that site use it")
        return 403, (f"a browser request from the page at {origin!r} was refused: this server answers its own "
                     f"page ({host or 'this host'}) and clients that send no Origin; {allow}")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False
