"""The source reader refuses every way out of the allowed folders and the public internet, and reads the rest.

Fetch tests talk to real HTTP(S) servers on 127.0.0.1 (and 127.0.0.2 where it can be bound); the reader
reaches them only through `_trusted_test_networks`, and names are pointed at them with an injected resolver.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from server.addresses import literal_ip, refusal_reason
from server.fetch import Fetcher, FetchError
from server.folders import default_allowed_dirs
from server.sources import Resolver, SafeSourceReader

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
SECRET = b"-----BEGIN OPENSSH PRIVATE KEY----- do not leak"


# --- helpers ----------------------------------------------------------------------------------------


def table_resolver(table: dict[str, list[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]

    return resolve


async def no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"no DNS lookup expected, got one for {host!r}")


async def refused(reader: SafeSourceReader, source: str, **kwargs: Any) -> str:
    with pytest.raises(ToolError) as info:
        await reader.read(source, **kwargs)
    return str(info.value)


@dataclass
class Server:
    base: str
    port: int
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def do_GET(self) -> None:
        state: Server = self.server.state
        state.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        url = urlsplit(self.path)
        try:
            if url.path == "/img.png":
                self.reply(200, PNG, {"Content-Type": "image/png"})
            elif url.path == "/big":  # no Content-Length: the cap must hold while streaming
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                for _ in range(100):
                    self.wfile.write(b"x" * 1000)
                self.close_connection = True
            elif url.path == "/big-declared":
                self.reply(200, b"x" * 100_000, {})
            elif url.path == "/slow":
                self.send_response(200)
                self.send_header("Content-Length", "10")
                self.end_headers()
                self.wfile.write(b"x")
                self.wfile.flush()
                state.release.wait(10)
            elif url.path == "/redirect":
                self.reply(302, b"", {"Location": parse_qs(url.query)["to"][0]})
            elif url.path == "/loop":
                self.reply(302, b"", {"Location": "/loop"})
            else:
                self.reply(404, b"not here", {})
        except OSError:  # the client hung up on purpose (size cap, timeout)
            self.close_connection = True

    def reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up mid-response (size cap, timeout, keep-alive close) are expected


@contextmanager
def serve(host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    httpd = QuietServer((host, 0), Handler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    port = httpd.server_address[1]
    state = Server(base=f"{'https' if tls else 'http'}://{host}:{port}", port=port)
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def web() -> Iterator[Server]:
    with serve() as server:
        yield server


def web_reader(**kwargs: Any) -> SafeSourceReader:
    """A reader that may reach 127.0.0.1 (only) and knows images.example as 127.0.0.1."""
    options: dict[str, Any] = {
        "allow_http": True,
        "resolver": table_resolver({"images.example": ["127.0.0.1"]}),
        "_trusted_test_networks": ["127.0.0.1/32"],
    }
    return SafeSourceReader([], **(options | kwargs))


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "cat.png").write_bytes(PNG)
    (outside / "secret.png").write_bytes(SECRET)
    return allowed, outside


# --- local paths ------------------------------------------------------------------------------------


async def test_reads_a_file_inside_an_allowed_folder(folders: tuple[Path, Path]) -> None:
    allowed, _ = folders
    data = await SafeSourceReader([allowed]).read(str(allowed / "cat.png"))
    assert (data.data, data.name, data.origin, data.media_type) == (PNG, "cat.png", "path", None)


async def test_tilde_is_expanded(folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    allowed, _ = folders
    monkeypatch.setenv("HOME", str(allowed.parent))
    assert (await SafeSourceReader([allowed]).read("~/allowed/cat.png")).data == PNG


async def test_relative_paths_are_looked_up_in_each_allowed_folder_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    (second / "sub").mkdir(parents=True)
    first.mkdir()
    (second / "sub" / "b.png").write_bytes(b"from second")
    (first / "a.png").write_bytes(b"from first")
    (second / "a.png").write_bytes(b"from second")
    reader = SafeSourceReader([first, second])
    assert (await reader.read("sub/b.png")).data == b"from second"
    assert (await reader.read("a.png")).data == b"from first"


@pytest.mark.parametrize("how", ["dotdot-absolute", "dotdot-relative", "absolute"])
async def test_paths_outside_the_allowed_folders_are_refused(folders: tuple[Path, Path], how: str) -> None:
    allowed, outside = folders
    source = {
        "dotdot-absolute": f"{allowed}/../outside/secret.png",
        "dotdot-relative": "../outside/secret.png",
        "absolute": str(outside / "secret.png"),
    }[how]
    message = await refused(SafeSourceReader([allowed]), source)
    assert "outside the allowed folders" in message
    assert str(allowed) in message and "IMAGECHAT_ALLOWED_DIRS" in message and "--allowed-dir" in message
    assert source in message and SECRET.decode() not in message


async def test_a_missing_file_outside_is_called_outside_not_missing(folders: tuple[Path, Path]) -> None:
    allowed, outside = folders
    # Saying "not found" here would tell an agent which files exist outside the allowed folders.
    message = await refused(SafeSourceReader([allowed]), str(outside / "nope.png"))
    assert "outside the allowed folders" in message


async def test_a_folder_name_that_merely_starts_like_an_allowed_one_is_outside(tmp_path: Path) -> None:
    allowed, evil = tmp_path / "allowed", tmp_path / "allowed-evil"
    allowed.mkdir()
    evil.mkdir()
    (evil / "a.png").write_bytes(PNG)
    message = await refused(SafeSourceReader([allowed]), str(evil / "a.png"))
    assert "outside the allowed folders" in message


async def test_a_symlink_to_a_file_outside_is_refused(folders: tuple[Path, Path]) -> None:
    allowed, outside = folders
    (allowed / "innocent.png").symlink_to(outside / "secret.png")
    (allowed / "door").symlink_to(outside, target_is_directory=True)
    reader = SafeSourceReader([allowed])
    assert "outside the allowed folders" in await refused(reader, str(allowed / "innocent.png"))
    assert "outside the allowed folders" in await refused(reader, "door/secret.png")


async def test_a_symlink_to_a_file_inside_is_followed(folders: tuple[Path, Path]) -> None:
    allowed, _ = folders
    (allowed / "alias.png").symlink_to(allowed / "cat.png")
    data = await SafeSourceReader([allowed]).read(str(allowed / "alias.png"))
    assert data.data == PNG and data.name == "cat.png"


async def test_hidden_files_and_folders_are_refused_unless_allowed(folders: tuple[Path, Path]) -> None:
    allowed, _ = folders
    (allowed / ".ssh").mkdir()
    (allowed / ".ssh" / "id_rsa").write_bytes(SECRET)
    (allowed / ".env").write_bytes(SECRET)
    (allowed / "pic.png").symlink_to(allowed / ".ssh" / "id_rsa")
    reader = SafeSourceReader([allowed])
    for source, part in ((".ssh/id_rsa", ".ssh"), (str(allowed / ".env"), ".env"), ("pic.png", ".ssh")):
        message = await refused(reader, source)
        assert f"hidden folder or file '{part}'" in message
        assert "IMAGECHAT_ALLOW_HIDDEN" in message and "--allow-hidden" in message
        assert SECRET.decode() not in message
    relaxed = SafeSourceReader([allowed], allow_hidden=True)
    assert (await relaxed.read(".ssh/id_rsa")).data == SECRET
    assert (await relaxed.read(str(allowed / ".env"))).data == SECRET


async def test_a_hidden_name_above_the_allowed_folder_does_not_count(tmp_path: Path) -> None:
    project = tmp_path / ".config" / "project"
    project.mkdir(parents=True)
    (project / "a.png").write_bytes(PNG)
    assert (await SafeSourceReader([project]).read(str(project / "a.png"))).data == PNG


async def test_a_folder_is_refused(folders: tuple[Path, Path]) -> None:
    allowed, _ = folders
    (allowed / "album").mkdir()
    message = await refused(SafeSourceReader([allowed]), str(allowed / "album"))
    assert "is a folder, not a file" in message and "Give the path of one image file" in message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
async def test_a_fifo_is_refused_without_blocking(folders: tuple[Path, Path]) -> None:
    allowed, _ = folders
    os.mkfifo(allowed / "pipe.png")
    message = await refused(SafeSourceReader([allowed]), str(allowed / "pipe.png"))
    assert "not a regular file" in message


async def test_a_missing_file_is_named_with_the_folders_searched(folders: tuple[Path, Path]) -> None:
    allowed, _ = folders
    message = await refused(SafeSourceReader([allowed]), "dog.png")
    assert "'dog.png' was not found" in message and str(allowed) in message


async def test_files_over_the_size_cap_are_refused(folders: tuple[Path, Path]) -> None:
    allowed, _ = folders
    (allowed / "ten.bin").write_bytes(b"0123456789")
    reader = SafeSourceReader([allowed], max_bytes=9)
    message = await refused(reader, "ten.bin", kind="file")
    assert "is 10 bytes, over the 9 bytes limit per file" in message and "smaller" in message
    assert (await reader.read("ten.bin", max_bytes=10)).data == b"0123456789"


async def test_with_no_allowed_folder_every_path_is_refused(folders: tuple[Path, Path]) -> None:
    allowed, _ = folders
    message = await refused(SafeSourceReader([]), str(allowed / "cat.png"))
    assert "no folder is allowed" in message and "IMAGECHAT_ALLOWED_DIRS" in message


async def test_allowed_dirs_are_resolved(folders: tuple[Path, Path], tmp_path: Path) -> None:
    allowed, _ = folders
    (tmp_path / "link").symlink_to(allowed, target_is_directory=True)
    assert SafeSourceReader([tmp_path / "link", allowed]).allowed_dirs == (allowed.resolve(),)


# --- file:// and data: URLs, bare base64, other schemes ----------------------------------------------


async def test_file_urls_are_read_like_paths(folders: tuple[Path, Path]) -> None:
    allowed, outside = folders
    (allowed / "my cat.png").write_bytes(PNG)
    reader = SafeSourceReader([allowed])
    for url in (f"file://{allowed}/cat.png", f"file://localhost{allowed}/my%20cat.png"):
        data = await reader.read(url)
        assert data.data == PNG and data.origin == "file-url"
    assert "outside the allowed folders" in await refused(reader, f"file://{outside}/secret.png")
    assert "another computer" in await refused(reader, f"file://fileserver{allowed}/cat.png")


async def test_data_urls_are_decoded(folders: tuple[Path, Path]) -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    data = await SafeSourceReader([]).read(url)
    assert (data.data, data.name, data.origin, data.media_type) == (PNG, "data-url", "data-url", "image/png")


async def test_bad_data_urls_are_refused_without_echoing_them() -> None:
    reader = SafeSourceReader([], max_bytes=1000)
    message = await refused(reader, "data:image/png;base64,iVBOR@@@not*base64")
    assert "valid base64" in message and "iVBOR" not in message
    assert "not base64-encoded" in await refused(reader, "data:text/plain,hello")
    # Too large is decided from the length alone: this payload is not even valid base64.
    message = await refused(reader, "data:image/png;base64," + "!" * 4000)
    assert "over the 1000 bytes limit" in message and "valid base64" not in message


async def test_bare_base64_is_refused_with_a_hint(folders: tuple[Path, Path]) -> None:
    allowed, _ = folders
    blob = base64.b64encode(PNG).decode()
    reader = SafeSourceReader([allowed])
    message = await refused(reader, blob)
    assert "looks like raw base64" in message and "data:image/png;base64," in message
    assert blob[:40] not in message
    assert "data:application/pdf;base64," in await refused(reader, blob, kind="file")
    headerless = base64.b64encode(bytes(300)).decode()  # no known signature, but no path is this long
    assert "looks like raw base64" in await refused(reader, headerless)


async def test_a_long_path_without_dots_is_still_treated_as_a_path(folders: tuple[Path, Path]) -> None:
    allowed, _ = folders
    source = "Screenshots/FromTheTeamMeetingLastWeek/WithoutAnyExtensionAtAll/AndQuiteLong"
    message = await refused(SafeSourceReader([allowed]), source)
    assert f"'{source}' was not found" in message


@pytest.mark.parametrize(
    ("source", "scheme"),
    [
        ("ftp://example.com/cat.png", "ftp"),
        ("gopher://example.com/1", "gopher"),
        ("javascript:alert(1)", "javascript"),
        ("smb://server/share/cat.png", "smb"),
    ],
)
async def test_other_schemes_are_refused_by_name(source: str, scheme: str) -> None:
    message = await refused(SafeSourceReader([], resolver=no_dns), source)
    assert f"unsupported '{scheme}:' scheme" in message and "https://" in message


async def test_an_empty_source_is_refused() -> None:
    assert "empty" in await refused(SafeSourceReader([]), "  ")


# --- URLs: the address guard ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "127.0.0.1, a loopback address"),
        ("http://localhost:8080/", "this computer (localhost)"),
        ("http://[::1]/", "::1, a loopback address"),
        ("http://10.0.0.1/", "10.0.0.1, a private-network address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address"),
        ("http://0x7f000001/", "127.0.0.1, a loopback address"),
        ("http://2130706433/", "127.0.0.1, a loopback address"),
        ("http://127.1/", "127.0.0.1, a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "IPv6 form of 127.0.0.1, a loopback address"),
        ("http://[64:ff9b::7f00:1]/", "IPv6 form of 127.0.0.1, a loopback address"),
        ("http://[2002:a00:1::]/", "IPv6 form of 10.0.0.1, a private-network address"),
        ("http://[fe80::1%25eth0]/", "a link-local address"),
        ("https://[fd00::1]/", "a private (unique local) address"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://224.0.0.1/", "a multicast address"),
        ("http://0.0.0.0/", "unspecified"),
    ],
)
async def test_urls_to_non_public_addresses_are_refused_without_dns(url: str, reason: str) -> None:
    message = await refused(SafeSourceReader([], allow_http=True, resolver=no_dns), url)
    assert reason in message
    assert "Only public internet addresses are downloaded" in message and "allowed folder" in message


async def test_an_octal_host_is_refused() -> None:
    message = await refused(SafeSourceReader([], allow_http=True, resolver=no_dns), "http://0177.0.0.1/")
    assert "not a valid URL" in message
    assert literal_ip("0177.0.0.1") == ipaddress.ip_address("127.0.0.1")


def test_public_addresses_pass_the_guard() -> None:
    for address in ("8.8.8.8", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808"):
        assert refusal_reason(ipaddress.ip_address(address)) is None


async def test_a_public_looking_name_that_resolves_to_loopback_is_refused() -> None:
    reader = SafeSourceReader([], resolver=table_resolver({"images.example.com": ["127.0.0.1"]}))
    message = await refused(reader, "https://images.example.com/cat.png")
    assert "127.0.0.1 (images.example.com resolves to it), a loopback address" in message


async def test_one_private_answer_among_public_ones_refuses_the_name() -> None:
    resolver = table_resolver({"cdn.example.com": ["93.184.215.14", "10.1.2.3"]})
    message = await refused(SafeSourceReader([], resolver=resolver), "https://cdn.example.com/cat.png")
    assert "10.1.2.3" in message and "private-network" in message and "Only public" in message


async def test_an_unknown_host_is_reported() -> None:
    message = await refused(SafeSourceReader([], resolver=table_resolver({})), "https://nowhere.example/a.png")
    assert "could not be found" in message and "Check the URL" in message


async def test_plain_http_is_refused_unless_allowed() -> None:
    message = await refused(SafeSourceReader([], resolver=no_dns), "http://example.com/cat.png")
    assert "plain http://" in message and "IMAGECHAT_ALLOW_HTTP" in message and "--allow-http" in message


async def test_urls_carrying_secrets_are_not_echoed() -> None:
    reader = SafeSourceReader([], resolver=table_resolver({"h.example": ["10.0.0.1"]}))
    message = await refused(reader, "https://user:hunter2@h.example/a.png?X-Amz-Signature=abc123")
    assert "hunter2" not in message and "abc123" not in message and "h.example/a.png" in message


# --- URLs: fetching from a local server -----------------------------------------------------------------


async def test_fetches_through_the_vetted_address_keeping_the_host_name(web: Server) -> None:
    data = await web_reader().read(f"http://images.example:{web.port}/img.png?size=large")
    assert (data.data, data.name, data.origin, data.media_type) == (PNG, "img.png", "http", "image/png")
    # The name only exists in the injected resolver: a second lookup would have failed.
    headers = web.requests[0][1]
    assert headers["host"] == f"images.example:{web.port}"
    assert headers["user-agent"] == "imagechat-mcp/0.1 (+https://github.com/imagechat-mcp)"


async def test_the_configured_user_agent_is_sent(web: Server) -> None:
    await web_reader(user_agent="imagechat-test/9").read(f"{web.base}/img.png")
    assert web.requests[0][1]["user-agent"] == "imagechat-test/9"


async def test_a_redirect_to_a_private_address_is_refused(web: Server) -> None:
    target = "http://169.254.169.254/latest/meta-data/"
    message = await refused(web_reader(), f"{web.base}/redirect?to={target}")
    assert f"was redirected to '{target}', which points to 169.254.169.254" in message
    assert "Only public internet addresses are downloaded" in message


async def test_a_redirect_target_is_vetted_again_before_connecting(web: Server) -> None:
    try:
        internal_server = serve("127.0.0.2")
        internal = internal_server.__enter__()
    except OSError:
        pytest.skip("127.0.0.2 cannot be bound here")
    try:
        names = {"images.example": ["127.0.0.1"], "internal.example": ["127.0.0.2"]}
        source = f"{web.base}/redirect?to=http://internal.example:{internal.port}/img.png"
        message = await refused(web_reader(resolver=table_resolver(names)), source)
        assert "which points to 127.0.0.2 (internal.example resolves to it), a loopback address" in message
        assert internal.requests == []
        # The same hop goes through when its network is trusted: the guard, not the setup, stopped it.
        trusting = web_reader(resolver=table_resolver(names), _trusted_test_networks=["127.0.0.0/8"])
        assert (await trusting.read(source)).data == PNG
        assert len(internal.requests) == 1
    finally:
        internal_server.__exit__(None, None, None)


async def test_redirect_loops_stop(web: Server) -> None:
    message = await refused(web_reader(max_redirects=2), f"{web.base}/loop")
    assert "redirected more than 2 times" in message and "final URL" in message
    assert len(web.requests) == 3


async def test_bodies_over_the_cap_are_stopped(web: Server) -> None:
    reader = web_reader(max_bytes=1000)
    message = await refused(reader, f"{web.base}/big")
    assert "is larger than the 1000 bytes limit (download stopped)" in message and "smaller" in message
    assert "is 97.7 KB, over the 1000 bytes limit" in await refused(reader, f"{web.base}/big-declared")


async def test_a_slow_server_times_out(web: Server) -> None:
    message = await refused(web_reader(total_timeout=0.5), f"{web.base}/slow")
    assert "did not finish downloading within 0.5 s" in message and "try again later" in message


async def test_http_errors_are_reported_with_the_status(web: Server) -> None:
    message = await refused(web_reader(), f"{web.base}/missing.png")
    assert "answered HTTP 404 Not Found" in message and "Check the URL" in message


# --- TLS: certificate checked for the host name while connecting to the vetted address ----------------


@dataclass
class Certificates:
    client: ssl.SSLContext
    server: ssl.SSLContext


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)

    def certificate(name: str, key: Any, issuer: str, signer: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("test CA", ca_key, "test CA", ca_key, ca=True)
    leaf_cert = certificate("images.example", leaf_key, "test CA", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (folder / "leaf.pem").write_bytes(leaf_cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    (folder / "leaf.key").write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "leaf.pem", folder / "leaf.key")
    return Certificates(client=ssl.create_default_context(cafile=str(folder / "ca.pem")), server=server)


def tls_fetcher(certificates: Certificates, names: dict[str, list[str]]) -> Fetcher:
    return Fetcher(
        allow_http=True,
        connect_timeout=5,
        total_timeout=10,
        max_redirects=3,
        user_agent="test",
        resolver=table_resolver(names),
        trusted_networks=["127.0.0.1/32"],
        ssl_context=certificates.client,
    )


async def test_https_checks_the_certificate_of_the_name_not_the_address(certificates: Certificates) -> None:
    names = {"images.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]}
    with serve(tls=certificates.server) as tls:
        fetched = await tls_fetcher(certificates, names).fetch(f"https://images.example:{tls.port}/img.png", 10**6)
        assert fetched.data == PNG
        with pytest.raises(FetchError) as info:
            await tls_fetcher(certificates, names).fetch(f"https://other.example:{tls.port}/img.png", 10**6)
        assert "certificate" in info.value.problem.lower()


async def test_an_https_to_http_downgrade_is_refused(certificates: Certificates, web: Server) -> None:
    names = {"images.example": ["127.0.0.1"]}
    with serve(tls=certificates.server) as tls:
        url = f"https://images.example:{tls.port}/redirect?to=http://images.example:{web.port}/img.png"
        with pytest.raises(FetchError) as info:
            await tls_fetcher(certificates, names).fetch(url, 10**6)
    assert "redirected from https to plain http" in info.value.problem
    assert web.requests == []


# --- default folders -------------------------------------------------------------------------------------


def test_default_dirs_are_the_workspace_and_the_usual_picture_folders(tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    for folder in (home / "Desktop", home / "Pictures", project):
        folder.mkdir(parents=True)
    assert default_allowed_dirs(cwd=project, home=home) == [project, home / "Desktop", home / "Pictures"]


def test_default_dirs_skip_root_and_home_as_working_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "Downloads").mkdir(parents=True)
    for cwd in (Path("/"), home, tmp_path):
        assert default_allowed_dirs(cwd=cwd, home=home) == [home / "Downloads"]


def test_default_dirs_are_resolved_and_unique(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "Pictures").mkdir(parents=True)
    (tmp_path / "pics").symlink_to(home / "Pictures", target_is_directory=True)
    assert default_allowed_dirs(cwd=tmp_path / "pics", home=home) == [home / "Pictures"]
