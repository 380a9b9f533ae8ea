"""The server class: what crosses the protocol boundary, checked and worded before and after the SDK's handling.

- Tool calls: arguments a tool does not take are refused before it runs (nothing is sent upstream, nothing
  changes), and pydantic's validation dumps become one sentence per argument (server.arguments).
- tools/list says each thing once (server.listing); app-only tools are listed only to clients that declared MCP Apps
  (in either era the client's capabilities say so), since no other client can show the app that calls them.
- A tool result's text is a short summary (server.summaries), not a second copy of its structured content.
- Tool results, errors and text resources never carry the API key (server.logsafe).
- Image resources carry each image's own mime type (a template has only one).
- Over authenticated HTTP each request sees its principal's own state (server.stores.scoped).
- prompts/get with an unknown prompt or a missing argument, and tools/call with an unknown tool, are
  invalid-params errors (-32602) that say what is known or missing, in both protocol eras, as resources/read is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mcp.server.apps import client_supports_apps
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolResult,
    GetPromptResult,
    InputRequiredResult,
    ListToolsResult,
    PaginatedRequestParams,
    Prompt,
    TextContent,
    Tool,
)
from pydantic import AnyUrl, ValidationError

from server import arguments as checks
from server import failures, fair_use, listing, logsafe, summaries
from server.stores.scoped import Principals, principal_of
from tools.deps import Deps

# Tools whose arguments shape their own run, never a conversation: not where another tool's argument belongs
# (chat(detail=...) is told set_options, not run_batch).
SELF_CONTAINED = frozenset({"run_batch"})


def app_only(tool: Tool) -> bool:
    ui = (tool.meta or {}).get("ui")
    return isinstance(ui, dict) and ui.get("visibility") == ["app"]


class ImageChatServer(MCPServer[Deps]):
    """MCPServer with the checks and wording above."""

    # Static resources get no context, so the ones that need the store or upstream find them here.
    current: Deps | None = None
    # Every tool's advertised input schema, by name: built on the first call, dropped when a tool comes or goes.
    schemas: dict[str, Mapping[str, Any]] | None = None
    # Tools only an MCP App calls (visibility ["app"]): never named to the model as where an argument belongs.
    app_only: frozenset[str] = frozenset()
    state_dir: Path | None = None  # where the SQLite store lives (named when its disk fails)
    principals: Principals | None = None  # set when HTTP authenticates: each principal's own state

    def scope_to_caller(self, context: Context[Deps, Any] | None) -> str | None:
        """Points this request's Deps at its principal's own state, and names the principal (None: the local
        one, whose state is the server's own)."""
        if self.principals is None or context is None:
            return None
        token = caller_token(context)
        if token is None:
            return None
        principal = principal_of(token)
        request = context.request_context
        request.lifespan_context = self.principals.deps_for(request.lifespan_context, principal)
        return principal

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Deps, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        """A principal's call is admitted by its fair-use limits first, and audited whatever its outcome."""
        principal = self.scope_to_caller(context)
        if principal is None or self.principals is None:
            return await self.checked_call(name, arguments, context)
        result: CallToolResult | InputRequiredResult | None = None
        try:
            await self.principals.admit(principal, name, arguments)
            result = await self.checked_call(name, arguments, context)
            return result
        finally:
            failed = result is None or (isinstance(result, CallToolResult) and result.is_error)
            fair_use.audit(principal, name, arguments, result, "error" if failed else "ok")

    def add_tool(self, *args: Any, **kwargs: Any) -> None:
        self.schemas = None
        super().add_tool(*args, **kwargs)

    def remove_tool(self, name: str) -> None:
        self.schemas = None
        super().remove_tool(name)

    async def checked_call(
        self, name: str, arguments: dict[str, Any], context: Context[Deps, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        if self.schemas is None:
            listed = await self.list_tools()
            self.schemas = {tool.name: tool.input_schema for tool in listed}
            self.app_only = frozenset(tool.name for tool in listed if app_only(tool))
        schemas = self.schemas
        if name not in schemas:
            # A protocol error (JSON-RPC invalid params), as the spec has it, not a tool's failure: nothing ran.
            # (The SDK would answer with a tool result flagged isError.)
            raise MCPError(
                code=INVALID_PARAMS, message=unknown_tool(name, [n for n in schemas if n not in self.app_only])
            )
        away = self.app_only | SELF_CONTAINED
        seen = {other: schema for other, schema in schemas.items() if other == name or other not in away}
        refusal = checks.unknown_arguments(name, arguments, seen)
        if refusal:
            raise ToolError(f"Error executing tool {name}: {refusal}")
        try:
            result = await super().call_tool(name, arguments, context)
        except UnexpectedToolError as exc:
            # A full or read-only disk, input nested too deeply: words for the agent instead of a bare error.
            words = failures.explain(exc.__cause__, self.state_dir)
            if words is None:
                raise
            raise ToolError(f"Error executing tool {name}: {words}") from None
        except ToolError as exc:
            raise logsafe.scrub_error(reworded(exc, name, schemas.get(name), arguments)) from exc.__cause__
        return logsafe.scrub_result(summarised(name, result)) if isinstance(result, CallToolResult) else result

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[Deps, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        self.scope_to_caller(context)
        result = await super().read_resource(uri, context)
        if isinstance(result, InputRequiredResult):
            return result
        if not str(uri).startswith("image://"):
            return [logsafe.scrub_contents(item) for item in result]
        from tools.image_mime import sniff_mime

        return [
            ReadResourceContents(
                content=item.content,
                meta=item.meta,
                mime_type=(sniff_mime(item.content) if isinstance(item.content, bytes) else None) or item.mime_type,
            )
            for item in result
        ]

    async def _handle_list_tools(
        self, ctx: ServerRequestContext[Deps], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        """tools/list as a model reads it (server.listing); app-only tools only for clients that declared MCP Apps.

        The SDK's handler is overridden because it is the one place that sees the caller's capabilities (there is
        no public hook with the request context); `list_tools()` stays as the SDK builds it, since call_tool's
        argument checks read the full schemas from it."""
        apps = client_supports_apps(ctx)
        listed = await self.list_tools()
        return ListToolsResult(
            tools=[listing.shaped(tool, app_only=app_only(tool)) for tool in listed if apps or not app_only(tool)]
        )

    async def run_stdio_lines(self, lines: Any, out: Any = None) -> None:
        """Serve stdio reading the requests from `lines` (an async iterator of lines; see server.terminal), and
        writing the answers to `out` (with `write` and `flush`; see server.stdio_pipes) or else stdout."""
        from mcp.server.stdio import stdio_server

        async with stdio_server(stdin=lines, stdout=out) as (read_stream, write_stream):
            lowlevel = self._lowlevel_server
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[Deps, Any] | None = None
    ) -> GetPromptResult | InputRequiredResult:
        known = {prompt.name: prompt for prompt in await self.list_prompts()}
        problem = prompt_problem(name, arguments or {}, known)
        if problem:
            raise MCPError(code=INVALID_PARAMS, message=problem, data={"name": name})
        self.scope_to_caller(context)
        return await super().get_prompt(name, arguments, context)


def caller_token(context: Context[Deps, Any]) -> AccessToken | None:
    """The caller's access token: from this HTTP request (the bearer middleware's user), else the context."""
    request = context.request_context.request
    scope = getattr(request, "scope", None)
    user = scope.get("user") if isinstance(scope, dict) else None
    if isinstance(user, AuthenticatedUser):
        return user.access_token
    return get_access_token()


def summarised(tool: str, result: CallToolResult) -> CallToolResult:
    """The result with a short summary as its text where the text was only a copy of the structured content."""
    structured = result.structured_content
    if result.is_error or structured is None or len(result.content) != 1:
        return result
    block = result.content[0]
    if not isinstance(block, TextContent) or not copies(block.text, structured):
        return result
    return result.model_copy(update={"content": [TextContent(type="text", text=summaries.summary(tool, structured))]})


def copies(text: str, structured: Mapping[str, Any]) -> bool:
    try:
        return bool(json.loads(text) == structured)
    except ValueError:
        return False


def reworded(exc: ToolError, tool: str, schema: Mapping[str, Any] | None, arguments: Mapping[str, Any]) -> ToolError:
    """The SDK's validation error as one sentence per argument (other tool errors as they are)."""
    cause = exc.__cause__
    if schema is None or not isinstance(cause, ValidationError):
        return exc
    said = checks.invalid_values(tool, schema, arguments, cause.errors())
    if said is None:
        return exc
    return type(exc)(f"Error executing tool {tool}: {said}")


def unknown_tool(name: str, known: list[str]) -> str:
    close = checks.closest(name, known)
    mean = f"did you mean {close!r}? " if close else ""
    return f"unknown tool {name!r}; {mean}the tools are: {', '.join(known)}."


def prompt_problem(name: str, arguments: Mapping[str, Any], known: Mapping[str, Prompt]) -> str | None:
    """Why prompts/get cannot render `name` with `arguments` (None when it can)."""
    if name not in known:
        close = checks.closest(name, list(known))
        mean = f"did you mean {close!r}? " if close else ""
        return f"unknown prompt {name!r}; {mean}the prompts are: {', '.join(known)}."
    declared = known[name].arguments or []
    takes = ", ".join(arg.name + (" (required)" if arg.required else "") for arg in declared)
    names = [arg.name for arg in declared]
    for given in arguments:
        if given not in names:
            close = checks.closest(given, names)
            mean = f"did you mean {close!r}? " if close else ""
            return f"prompt {name!r} has no argument {given!r}; {mean}it takes: {takes}."
    for arg in declared:
        if arg.required and not str(arguments.get(arg.name) or "").strip():
            about = f" ({arg.description.rstrip('.')})" if arg.description else ""
            return f"prompt {name!r} needs the argument {arg.name!r}{about}; it takes: {takes}."
    return None
