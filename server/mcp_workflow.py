"""The Run Workflow step as an MCP tool: a ComfyUI workflow file, run through the other steps."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations

from server.mcp_tools import progress_of
from tools import workflow as workflow_step
from tools.deps import Deps


def register_workflow_tool(server: MCPServer[Deps]) -> None:
    @server.tool(
        title="Run a ComfyUI workflow",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
        ),
    )
    async def run_workflow(
        workflow: workflow_step.WorkflowArg,
        ctx: Context[Deps, Any],
        input_dir: workflow_step.InputDirArg = None,
        name: workflow_step.RunNameArg = None,
        fresh: workflow_step.FreshArg = False,
        dry_run: workflow_step.WorkflowDryRunArg = False,
    ) -> workflow_step.WorkflowResult:
        """Run a ComfyUI OpenAI Chat workflow (LoadImage, image batches, OpenAIChatConfig, OpenAIInputFiles,
        OpenAIChatNode, PreviewAny; muted and bypassed nodes honoured); anything else is refused before any model
        call."""
        deps: Deps = ctx.request_context.lifespan_context
        folder = None
        if input_dir is not None and input_dir.strip():
            folder = await deps.reader.allowed_folder(input_dir, argument="input_dir")
        return await workflow_step.run_workflow(
            deps,
            workflow,
            input_dir=folder,
            name=name,
            progress=progress_of(ctx),
            fresh=fresh,
            dry_run=dry_run,
        )
