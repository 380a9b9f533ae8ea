"""Fetching an image or document from an https:// URL without opening a door into the local network.

An agent can be talked into fetching `http://169.254.169.254/` (cloud credentials) or an admin page on
the user's router, so every connection goes through one rule: connect only to public internet addresses.

How the rule is enforced:

- The host is resolved once, by `VettingBackend.connect_tcp` (server.pinned_transport), the only
  place a socket is opened.
  Every address the name resolves to must be public (one private answer refuses the whole name),
  and the socket connects to one of those vetted addresses, never to the name, so a second DNS
  answer (DNS rebinding) cannot slip in. The Host header and TLS SNI/certificate check still use the
  original host name, because httpcore builds them from the URL, not from the socket.
- Numeric hosts (`2130706433`, `0x7f000001`, `127.1`) are read the way the C resolver reads them
  (`inet_aton`), IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4) are judged by that
  IPv4 address, and `localhost` names are refused by name.
- Redirects are followed here, one hop at a time, and every hop connects through the same backend,
  so each new host is vetted again; https -> http downgrades are refused.
- Environment proxies are ignored (a proxy would resolve the name itself, out of our sight).
- Size is capped while streaming, time by a connect timeout and a total deadline.

Existing libraries were checked first: `safehttpx` (gradio) and `drawbridge` do this for `httpx`, which
is not installed here (mcp and openai use `httpx2`); `safehttpx` also resolves names through Google DNS.
Neither fits, hence this module, built only on httpx2/httpcore2's public API.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import httpcore2
import httpx2

from server.addresses import IPAddress, IPNetwork, Resolver, literal_ip, refusal_reason
from server.pinned_transport import PinnedTransport, VettingBackend, system_resolver
from server.sizes import format_size
from tools.source_label import source_label

ALLOW_HTTP_SETTING = "IMAGECHAT_ALLOW_HTTP=1 / --allow-http"

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_TIMEOUTS = (httpx2.TimeoutException, httpcore2.TimeoutException)
# httpcore2 errors reach us unmapped because PinnedTransport talks to httpcore2 directly.
_NETWORK_ERRORS = (
    httpx2.TransportError,
    httpx2.DecodingError,
    httpcore2.NetworkError,
    httpcore2.ProtocolError,
    httpcore2.UnsupportedProtocol,
    OSError,
)


class FetchError(Exception):
    """A download that was refused or failed. `problem` is a verb phrase ("points to 10.0.0.1, ..."),
    so the caller can put the source's name in front of it; `advice` says what to do instead."""

    def __init__(self, problem: str, advice: str) -> None:
        super().__init__(f"{problem}. {advice}")
        self.problem = problem
        self.advice = advice


@dataclass(frozen=True)
class Fetched:
    data: bytes
    media_type: str | None
    url: str  # after redirects


class Fetcher:
    """Downloads one URL at a time under the rules in the module docstring."""

    def __init__(
        self,
        *,
        allow_http: bool,
        connect_timeout: float,
        total_timeout: float,
        max_redirects: int,
        user_agent: str,
        resolver: Resolver | None = None,
        trusted_networks: Sequence[str] = (),
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._allow_http = allow_http
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._max_redirects = max_redirects
        self._user_agent = user_agent
        self._resolver = resolver or system_resolver
        # Test-only exemptions (a local server on 127.0.0.1); never reachable from configuration.
        self._trusted: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in trusted_networks)
        self._ssl_context = ssl_context

    async def fetch(self, url: str, max_bytes: int) -> Fetched:
        try:
            with anyio.fail_after(self._total_timeout):
                return await self._fetch(url, max_bytes)
        except (TimeoutError, *_TIMEOUTS):
            raise FetchError(
                f"did not finish downloading within {self._total_timeout:g} s",
                "The server is slow or not answering: try again later, or download the file yourself and give its path",
            ) from None

    async def _fetch(self, url: str, max_bytes: int) -> Fetched:
        current = _parse_url(url)
        if self._ssl_context is None:
            self._ssl_context = httpcore2.default_ssl_context()
        client = httpx2.AsyncClient(
            transport=PinnedTransport(VettingBackend(self._vet), self._ssl_context),
            trust_env=False,  # no proxies and no .netrc credentials from the environment
            follow_redirects=False,
            timeout=httpx2.Timeout(self._total_timeout, connect=self._connect_timeout),
            headers={"User-Agent": self._user_agent, "Accept": "*/*", "Accept-Encoding": "identity"},
        )
        async with client:
            for hop in range(self._max_redirects + 1):
                try:
                    result = await self._get(client, current, max_bytes)
                except FetchError as exc:
                    if hop == 0:
                        raise
                    raise FetchError(
                        f"was redirected to {source_label(str(current))}, which {exc.problem}", exc.advice
                    ) from None
                if isinstance(result, Fetched):
                    return result
                if current.scheme == "https" and result.scheme == "http":
                    raise FetchError(
                        f"redirected from https to plain http ({source_label(str(result))})",
                        "Plain http can be read and changed in transit, so the download was stopped. "
                        "Use a URL that stays on https://",
                    )
                current = result
        raise FetchError(
            f"redirected more than {self._max_redirects} times",
            "Give the final URL of the file instead of one that keeps redirecting",
        )

    async def _get(self, client: httpx2.AsyncClient, url: httpx2.URL, max_bytes: int) -> Fetched | httpx2.URL:
        """One request: the body, or where the server redirects to."""
        self._check_scheme(url)
        try:
            async with client.stream("GET", url) as response:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(
                            f"answered HTTP {response.status_code} (a redirect) without saying where to",
                            "Give the final URL of the file",
                        )
                    return _join(url, location)
                _check_status(response)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise _too_large(int(declared), max_bytes)
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise _too_large(None, max_bytes)
                media_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                return Fetched(bytes(body), media_type or None, str(url))
        except _TIMEOUTS:
            raise
        except _NETWORK_ERRORS as exc:
            raise FetchError(
                f"could not be downloaded ({type(exc).__name__}: {_first_line(exc)})",
                "Check that the URL is right and the server is up, or download the file yourself and give its path",
            ) from None

    def _check_scheme(self, url: httpx2.URL) -> None:
        if url.scheme == "https" or (url.scheme == "http" and self._allow_http):
            if not url.raw_host:
                raise FetchError("has no host name", "Give a full URL such as https://example.com/cat.png")
            return
        if url.scheme == "http":
            raise FetchError(
                "is a plain http:// URL",
                "Plain http can be read and changed in transit. Use the https:// address, or start the "
                f"server with {ALLOW_HTTP_SETTING} to allow plain http",
            )
        raise FetchError(
            f"uses the unsupported '{url.scheme}:' scheme",
            "Only https:// URLs (and http:// when allowed) are downloaded",
        )

    async def _vet(self, host: str, port: int) -> list[str]:
        """All addresses `host` stands for, each one public (or test-trusted); else FetchError."""
        literal = literal_ip(host)
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        elif host.lower().rstrip(".") == "localhost" or host.lower().rstrip(".").endswith(".localhost"):
            raise FetchError("points to this computer (localhost)", _PUBLIC_ONLY)
        else:
            addresses = await self._resolve(host, port)
        for ip in addresses:
            if any(ip.version == net.version and ip in net for net in self._trusted):
                continue
            reason = refusal_reason(ip)
            if reason is not None:
                via = "" if literal is not None else f" ({host} resolves to it)"
                raise FetchError(f"points to {ip}{via}, {reason}", _PUBLIC_ONLY)
        return list(dict.fromkeys(str(ip) for ip in addresses))

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            answers = await self._resolver(host, port)
        except (OSError, UnicodeError):
            answers = []
        addresses: list[IPAddress] = []
        for answer in answers:
            try:
                addresses.append(ipaddress.ip_address(answer.split("%", 1)[0]))
            except ValueError:
                raise FetchError(f"resolves to {answer!r}, which is not an IP address", _PUBLIC_ONLY) from None
        if not addresses:
            raise FetchError(f"names a host ({host}) that could not be found", "Check the URL for typos")
        return addresses


_PUBLIC_ONLY = (
    "Only public internet addresses are downloaded, so that a URL cannot reach this computer or its "
    "local network. If the file is yours, save it into an allowed folder and give its path"
)


def _parse_url(url: str) -> httpx2.URL:
    try:
        return httpx2.URL(url)
    except (httpx2.InvalidURL, ValueError, TypeError) as exc:
        raise FetchError(f"is not a valid URL ({_first_line(exc)})", "Check the URL") from None


def _join(base: httpx2.URL, location: str) -> httpx2.URL:
    try:
        return base.join(location)
    except (httpx2.InvalidURL, ValueError, TypeError) as exc:
        raise FetchError(f"redirected to an invalid URL ({_first_line(exc)})", "Give the file's final URL") from None


def _check_status(response: httpx2.Response) -> None:
    code = response.status_code
    if 200 <= code < 300:
        return
    if code in (401, 403, 407):
        advice = "The server wants a login or refuses access: download the file yourself and give its path"
    elif code == 404 or code == 410:
        advice = "Check the URL; the file is not (or no longer) there"
    elif code == 429 or code >= 500:
        advice = "The server is busy or failing: try again later"
    else:
        advice = "Check the URL, or download the file yourself and give its path"
    raise FetchError(f"answered HTTP {code} {response.reason_phrase}".rstrip(), advice)


def _too_large(size: int | None, limit: int) -> FetchError:
    what = f"is {format_size(size)}, over" if size is not None else "is larger than"
    return FetchError(
        f"{what} the {format_size(limit)} limit (download stopped)",
        "Use a smaller or more compressed copy of the file",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "no details"
