"""A workflow's dry run: every chat node's estimated tokens and cost, before any model is called.

The nodes run as in a real run (images and files are read, batches and configs built) except the two that would
call or show a model's answer: each OpenAIChatNode is planned and its request built exactly as `chat`'s dry run
does, against its conversation and with the options the node would set (nothing is stored or sent), and PreviewAny
shows nothing. A chat node whose prompt is another node's answer is estimated with that answer empty, and says so.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from tools import options, pricing
from tools.chat import check_known_model
from tools.plan import ChatCall, plan_turn
from tools.request import build_request, estimate
from tools.sanitize import clean_text
from tools.workflow_graph import Node
from tools.workflow_run import (
    RUNNERS,
    STARTING_POINT_TAG,
    Answer,
    ChatConfig,
    Files,
    Images,
    Run,
    as_text,
    conversation_for,
    option_changes,
)


class ChatEstimate(BaseModel):
    conversation_id: str
    model: str
    input_tokens: int = Field(description="Estimated input tokens (text, images, replayed history).")
    images: int
    cost_usd: pricing.CostEstimate | None = Field(description="None when the model has no known price.")
    notes: list[str] = Field(default_factory=list)


class WorkflowEstimate(BaseModel):
    chats: dict[str, ChatEstimate] = Field(description="Each OpenAIChatNode's estimate, by node id.")
    total_usd: float | None = Field(
        description="Input cost plus the most every answer may cost (max_output_tokens), over all chat nodes; None "
        "when a model has no known price."
    )
    notes: list[str] = Field(default_factory=list)


async def estimate_nodes(run: Run) -> WorkflowEstimate:
    chats: dict[str, ChatEstimate] = {}
    for node in run.plan.order:
        if node.type == "OpenAIChatNode":
            chats[node.id] = await estimate_chat(run, node)
            run.outputs[node.id] = (Answer("", chats[node.id].conversation_id, 0),)
        elif node.type == "PreviewAny":
            run.outputs[node.id] = ()
        else:
            run.outputs[node.id] = await RUNNERS[node.type].run(run, node)
    costs = [chat.cost_usd for chat in chats.values()]
    total = None if any(cost is None for cost in costs) else sum(c.input + c.output_max for c in costs if c)
    notes = ["Nothing was sent: this is an estimate."]
    notes += [f"Node {node}: {chat.model} has no known price." for node, chat in chats.items() if not chat.cost_usd]
    return WorkflowEstimate(chats=chats, total_usd=round(total, 6) if total is not None else None, notes=notes)


async def estimate_chat(run: Run, node: Node) -> ChatEstimate:
    deps, conversation_id = run.deps, conversation_for(run.name, node.id)
    notes: list[str] = []
    if "prompt" in node.links:
        prompt = as_text(run.linked(node, "prompt"))
        if isinstance(run.linked(node, "prompt"), Answer):
            notes.append("Its prompt is another chat node's answer, counted here as empty.")
    else:
        prompt = node.values["prompt"]
    config = run.linked(node, "advanced_options") if "advanced_options" in node.links else None
    conversation = await deps.conversation(conversation_id)
    changes = option_changes(deps, node, config if isinstance(config, ChatConfig) else None)
    conversation.options, dropped = options.apply(deps, conversation.options, changes)
    call = ChatCall(
        clean_text(STARTING_POINT_TAG.sub("", prompt).strip() or "(answer)"),
        run.batch(node, "images", Images).ids,
        run.batch(node, "files", Files).ids,
        bool(node.values.get("persist_context", False)),
        run.starting_points.get(node.id),
    )
    plan = plan_turn(conversation, call, max_images=deps.limits.max_images_per_turn)
    notes += [*dropped, *plan.notes, *await check_known_model(deps, plan.options.model)]
    tokens = estimate(await build_request(deps, plan))
    return ChatEstimate(
        conversation_id=conversation_id,
        model=plan.options.model,
        input_tokens=tokens.total,
        images=len(tokens.images),
        cost_usd=pricing.estimate(plan.options.model, tokens.total, plan.options.max_output_tokens),
        notes=notes,
    )
