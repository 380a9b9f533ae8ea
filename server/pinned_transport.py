"""The only way a download leaves this process: a socket to an address the fetcher vetted.

`server.fetch` decides which addresses are allowed; this module makes sure nothing else is ever
connected to. httpx2's own transport resolves names itself and cannot be given a network backend,
so this is an httpx2 transport over an httpcore2 pool whose network backend asks the fetcher's
vetting function for the addresses of a host and connects to one of them, never to the name.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable

import anyio
import httpcore2
import httpx2


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class VettingBackend(httpcore2.AsyncNetworkBackend):
    """Opens every connection: resolves the host once, vets all its addresses, connects to a vetted one."""

    def __init__(self, vet: Callable[[str, int], Awaitable[list[str]]]) -> None:
        self._vet = vet
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore2 calls us with it)
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                failure: Exception = httpcore2.ConnectError(f"no address to connect to for {host}")
                for address in await self._vet(host, port):
                    try:
                        return await self._inner.connect_tcp(
                            address, port, local_address=local_address, socket_options=socket_options
                        )
                    except httpcore2.ConnectError as exc:
                        failure = exc
                raise failure
        except TimeoutError as exc:
            raise httpcore2.ConnectTimeout(f"connecting took longer than {timeout:g} s") from exc

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class _Body(httpx2.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class PinnedTransport(httpx2.AsyncBaseTransport):
    """An httpx2 transport over an httpcore2 pool whose only way out is VettingBackend.
    (httpx2.AsyncHTTPTransport builds its own pool and cannot be given a network backend.)"""

    def __init__(self, backend: httpcore2.AsyncNetworkBackend, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=ssl_context, network_backend=backend, max_connections=4, http1=True, http2=False
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        assert isinstance(request.stream, httpx2.AsyncByteStream)
        core_request = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)
        return httpx2.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
