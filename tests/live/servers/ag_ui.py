"""Shape F (examples/ag-ui): an AG-UI agent over a WebSocket at /agent/ws (no auth).

Each text frame the client sends is a RunAgentInput `{threadId, runId, state, messages, tools, context,
forwardedProps}`; the server answers with one run: `RUN_STARTED`, `STATE_SNAPSHOT`, `STEP_STARTED`, then either
a tool call (when the input offers tools: `TOOL_CALL_START/ARGS/END` for the first tool) or a text message
(`TEXT_MESSAGE_START/CONTENT*/END` and a `MESSAGES_SNAPSHOT` holding it), `STEP_FINISHED`, `RUN_FINISHED`.
An input that is not a valid RunAgentInput gets `RUN_ERROR` (no run starts); the connection stays usable.
"""

import asyncio
import json
import re
import time
import uuid

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

import common

BUGS = {
    "no-run-started": "the run's events start without `RUN_STARTED`",
    "finished-with-open-message": "`RUN_FINISHED` is sent before the message's `TEXT_MESSAGE_END`",
    "message-reopened": "every chunk re-sends `TEXT_MESSAGE_START` with the same messageId while it is open",
    "snapshot-mismatch": "`MESSAGES_SNAPSHOT` holds the text without its last chunk",
    "run-started-twice": "a second `RUN_STARTED` is sent inside the running run (after its first step starts)",
    "event-after-run-error": "after `RUN_ERROR` the server still sends a text message",
    "crash-without-terminal": "the agent raises after the text: the socket closes (1011) with neither RUN_FINISHED nor RUN_ERROR",
    "invalid-input-crashes": "an invalid RunAgentInput raises: the socket closes (1011) instead of `RUN_ERROR`",
}

PACE = 0.005  # seconds between chunks
REQUIRED = {"threadId": str, "runId": str, "state": object, "messages": list, "tools": list, "context": list,
            "forwardedProps": object}


def now_ms():
    return int(time.time() * 1000)


def invalid(data):
    """Why `data` is not a RunAgentInput, or None."""
    if not isinstance(data, dict):
        return "RunAgentInput must be a JSON object"
    for name, kind in REQUIRED.items():
        if name not in data:
            return f"RunAgentInput.{name} is required"
        if not isinstance(data[name], kind):
            return f"RunAgentInput.{name} must be a {kind.__name__}"
    for m in data["messages"]:
        if not isinstance(m, dict) or not isinstance(m.get("id"), str) or "role" not in m:
            return "every message needs an id and a role"
    return None


def make_app(bug):
    app = FastAPI()

    @app.websocket("/agent/ws")
    async def agent(ws: WebSocket):
        await ws.accept()
        run = Runner(ws, bug)
        try:
            while True:
                raw = await ws.receive_text()
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = None
                if await run.handle(data) == "closed":
                    return
        except WebSocketDisconnect:
            pass

    return app


class Runner:
    def __init__(self, ws, bug):
        self.ws = ws
        self.bug = bug

    async def send(self, event):
        await self.ws.send_text(json.dumps({**event, "timestamp": now_ms()}))

    async def handle(self, data):
        why = invalid(data)
        if why:
            if self.bug == "invalid-input-crashes":
                await self.ws.close(code=1011)
                return "closed"
            await self.send({"type": "RUN_ERROR", "message": why, "code": "INVALID_INPUT"})
            if self.bug == "event-after-run-error":
                mid = f"msg-{uuid.uuid4().hex[:12]}"
                await self.send({"type": "TEXT_MESSAGE_START", "messageId": mid, "role": "assistant"})
                await self.send({"type": "TEXT_MESSAGE_CONTENT", "messageId": mid, "delta": "Sorry."})
                await self.send({"type": "TEXT_MESSAGE_END", "messageId": mid})
            return
        ids = {"threadId": data["threadId"], "runId": data["runId"]}
        if self.bug != "no-run-started":
            await self.send({"type": "RUN_STARTED", **ids})
        await self.send({"type": "STATE_SNAPSHOT", "snapshot": data["state"]})
        await self.send({"type": "STEP_STARTED", "stepName": "respond"})
        if self.bug == "run-started-twice":
            await self.send({"type": "RUN_STARTED", **ids})
        if data["tools"]:
            await self.tool_call(data)
        else:
            ended = await self.text(data)
            if ended == "closed":
                return "closed"
            if ended == "finished":
                return
        await self.send({"type": "STEP_FINISHED", "stepName": "respond"})
        await self.send({"type": "RUN_FINISHED", **ids})

    async def tool_call(self, data):
        tool = data["tools"][0]
        call = f"call-{uuid.uuid4().hex[:12]}"
        said = last_user_text(data)
        city = re.search(r"\bin ([A-Z][a-z]+)", said)
        args = json.dumps({"city": city[1]}) if city else "{}"
        chunks = [args[i:i + 5] for i in range(0, len(args), 5)]
        await self.send({"type": "TOOL_CALL_START", "toolCallId": call, "toolCallName": tool.get("name", "tool"),
                         "parentMessageId": f"msg-{uuid.uuid4().hex[:12]}"})
        for c in chunks:
            await asyncio.sleep(PACE)
            await self.send({"type": "TOOL_CALL_ARGS", "toolCallId": call, "delta": c})
        await self.send({"type": "TOOL_CALL_END", "toolCallId": call})

    async def text(self, data):
        mid = f"msg-{uuid.uuid4().hex[:12]}"
        reply = answer(last_user_text(data))
        chunks = re.findall(r"\S+\s*", reply)
        await self.send({"type": "TEXT_MESSAGE_START", "messageId": mid, "role": "assistant"})
        for c in chunks:
            await asyncio.sleep(PACE)
            if self.bug == "message-reopened":
                await self.send({"type": "TEXT_MESSAGE_START", "messageId": mid, "role": "assistant"})
            await self.send({"type": "TEXT_MESSAGE_CONTENT", "messageId": mid, "delta": c})
        if self.bug == "crash-without-terminal":
            await self.ws.close(code=1011)
            return "closed"
        if self.bug == "finished-with-open-message":
            await self.send({"type": "STEP_FINISHED", "stepName": "respond"})
            await self.send({"type": "RUN_FINISHED", "threadId": data["threadId"], "runId": data["runId"]})
        await self.send({"type": "TEXT_MESSAGE_END", "messageId": mid})
        text = "".join(chunks[:-1]) if self.bug == "snapshot-mismatch" else reply
        await self.send({"type": "MESSAGES_SNAPSHOT",
                         "messages": data["messages"] + [{"id": mid, "role": "assistant", "content": text}]})
        return "finished" if self.bug == "finished-with-open-message" else None


def last_user_text(data):
    for m in reversed(data["messages"]):
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            return m["content"]
    return ""


def answer(said):
    if said.strip().lower() in ("hi", "hello"):
        return "Hello! How can I help you today?"
    return f"Here is my answer to: {said}"


if __name__ == "__main__":
    common.main(make_app)
