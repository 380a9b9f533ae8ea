"""The Run Workflow step as an MCP tool: a ComfyUI workflow file, run through the other steps."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

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
        workflow: Annotated[
            str | dict[str, Any],
            Field(
                description="A ComfyUI workflow: the path of its .json file inside the allowed folders, or the JSON "
                "object itself, in the UI format (nodes and links, as saved from ComfyUI) or the API format "
                "({'<id>': {'class_type', 'inputs'}})."
            ),
        ],
        ctx: Context[Deps, Any],
        input_dir: Annotated[
            str | None,
            Field(
                description="Folder where LoadImage and OpenAIInputFiles names are looked up, like ComfyUI's input "
                "folder; must be inside the allowed folders. Default: the server's input folder."
            ),
        ] = None,
        name: Annotated[
            str | None,
            Field(
                max_length=80,
                description="Names the run's conversations 'workflow:<name>:node<id>'. Default: the file's name "
                "without .json, or the workflow's id. Keep it to continue conversations across runs.",
            ),
        ] = None,
    ) -> workflow_step.WorkflowResult:
        """Run a ComfyUI OpenAI Chat workflow file: LoadImage, ImageBatch/BatchImagesNode, OpenAIChatConfig,
        OpenAIInputFiles, OpenAIChatNode and PreviewAny nodes, in link order, honouring muted and bypassed
        nodes. Returns each PreviewAny's text and each chat node's result by node id. Anything it cannot run,
        and any missing input file, is refused before the model is called."""
        deps: Deps = ctx.request_context.lifespan_context
        folder = None
        if input_dir is not None and input_dir.strip():
            folder = await deps.reader.allowed_folder(input_dir, argument="input_dir")

        async def progress(done: float, total: float | None, message: str) -> None:
            await ctx.report_progress(done, total, message)

        return await workflow_step.run_workflow(deps, workflow, input_dir=folder, name=name, progress=progress)
