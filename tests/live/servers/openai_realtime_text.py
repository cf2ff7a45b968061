"""Shape E (examples/openai-realtime-text): a text-only stand-in for the OpenAI Realtime API at /v1/realtime.

The upgrade needs `Authorization: Bearer <key>`; a key is an HS256 JWT signed with LIVE_JWT_SECRET (any other
key gets HTTP 401 with a JSON error before the upgrade). Every server event carries `event_id`; the first is
`session.created`. Client events: `session.update` (-> `session.updated`), `conversation.item.create` (a user
message or a `function_call_output`; -> `conversation.item.added`, `conversation.item.done`), `response.create`
and `response.cancel`. A response runs `response.created` -> `response.output_item.added` ->
`response.content_part.added` -> `response.output_text.delta`* -> `response.output_text.done` ->
`response.content_part.done` -> `response.output_item.done` -> `response.done` (always sent: completed or
cancelled); with tools and `tool_choice: required` it is a function call instead (`function_call_arguments.delta`*
-> `.done`). Responses stream in a task, so a `response.cancel` is read while one runs; with nothing running it
gets an `error` and the session stays usable.
"""

import asyncio
import json
import re
import uuid

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.responses import JSONResponse

import common

BUGS = {
    "key-rejected": "every valid API key is refused with HTTP 401 on the upgrade",
    "missing-event-id": "server events carry no `event_id`",
    "text-done-mismatch": "`response.output_text.done.text` drops the last delta",
    "cancel-not-concurrent": "the response streams inline: `response.cancel` is read only after `response.done`",
    "no-done-on-cancel": "a cancelled response stops without its `response.done`",
    "delta-after-done": "a delta still in flight is sent after `response.done {status: cancelled}`",
    "cancel-idle-closes": "`response.cancel` with nothing running closes the socket (1011) instead of an `error`",
}

PACE = 0.005  # seconds between deltas


def new_id(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def make_app(bug):
    app = FastAPI()

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket):
        claims = common.decode_jwt(common.bearer(ws.headers))
        if claims is None or bug == "key-rejected":
            await ws.send_denial_response(JSONResponse(
                {"error": {"type": "invalid_request_error", "code": "invalid_api_key",
                           "message": "Incorrect API key provided."}}, status_code=401))
            return
        await ws.accept()
        await Session(ws, bug, ws.query_params.get("model", "gpt-realtime")).run()

    return app


class Session:
    def __init__(self, ws, bug, model):
        self.ws = ws
        self.bug = bug
        self.lock = asyncio.Lock()
        self.items = []  # the conversation, in order
        self.active = None  # (response id, task) of the running response
        self.session = {
            "id": new_id("sess"), "object": "realtime.session", "type": "realtime", "model": model,
            "output_modalities": ["text"], "instructions": "", "tools": [], "tool_choice": "auto",
        }

    async def send(self, event):
        event = dict(event)
        if self.bug != "missing-event-id":
            event = {"event_id": new_id("event"), **event}
        async with self.lock:
            await self.ws.send_text(json.dumps(event))

    async def error(self, message, code=None, param=None, client_event_id=None):
        await self.send({"type": "error", "error": {
            "type": "invalid_request_error", "code": code, "message": message, "param": param,
            "event_id": client_event_id}})

    async def run(self):
        await self.send({"type": "session.created", "session": self.session})
        try:
            while True:
                raw = await self.ws.receive_text()
                try:
                    event = json.loads(raw)
                except ValueError:
                    await self.error("The event is not valid JSON.", code="invalid_json")
                    continue
                if not isinstance(event, dict):
                    await self.error("An event must be a JSON object.", code="invalid_event")
                    continue
                if await self.handle(event) == "closed":
                    return
        except WebSocketDisconnect:
            pass
        finally:
            if self.active:
                self.active[1].cancel()

    async def handle(self, event):
        kind, eid = event.get("type"), event.get("event_id")
        if kind == "session.update":
            update = event.get("session")
            if not isinstance(update, dict):
                await self.error("Missing required parameter: 'session'.", "missing_required_parameter",
                                 "session", eid)
                return
            self.session.update({k: v for k, v in update.items() if k not in ("id", "object")})
            await self.send({"type": "session.updated", "session": self.session})
        elif kind == "conversation.item.create":
            item = event.get("item")
            if not isinstance(item, dict) or item.get("type") not in ("message", "function_call_output"):
                await self.error("Invalid item.", "invalid_value", "item", eid)
                return
            item = {"id": new_id("item"), "object": "realtime.item", "status": "completed", **item}
            previous = self.items[-1]["id"] if self.items else None
            self.items.append(item)
            await self.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
            await self.send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})
        elif kind == "response.create":
            if self.active:
                await self.error("Conversation already has an active response in progress.",
                                 "conversation_already_has_active_response", None, eid)
                return
            rid = new_id("resp")
            if self.bug == "cancel-not-concurrent":
                await self.respond(rid, event.get("response") or {})
                return
            task = asyncio.create_task(self.respond(rid, event.get("response") or {}))
            self.active = (rid, task)
            task.add_done_callback(lambda t: self.finished(rid))
        elif kind == "response.cancel":
            wanted = event.get("response_id")
            if not self.active or (wanted and wanted != self.active[0]):
                if self.bug == "cancel-idle-closes":
                    await self.ws.close(code=1011)
                    return "closed"
                await self.error("Cancellation failed: no active response found",
                                 "response_cancel_not_active", None, eid)
                return
            task = self.active[1]
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:
            await self.error(f"Invalid value: '{kind}'. Supported values are: 'session.update', "
                             "'conversation.item.create', 'response.create', 'response.cancel'.",
                             "invalid_value", "type", eid)

    def finished(self, rid):
        if self.active and self.active[0] == rid:
            self.active = None

    def plan(self):
        """What the next response is: ("call", tool) or ("text", reply)."""
        last = self.items[-1] if self.items else {}
        tools = self.session.get("tools") or []
        if tools and self.session.get("tool_choice") == "required" and last.get("type") != "function_call_output":
            return "call", tools[0]
        if last.get("type") == "function_call_output":
            return "text", f"The tool says: {last.get('output', '')}"
        said = " ".join(c.get("text", "") for c in last.get("content") or [] if isinstance(c, dict))
        count = re.search(r"from (\d+) to (\d+)", said)
        if count:
            return "text", "\n".join(str(n) for n in range(int(count[1]), int(count[2]) + 1))
        if said.startswith("Say: "):
            return "text", said[len("Say: "):]
        return "text", "Hello there, nice to meet you!"

    async def respond(self, rid, options):
        response = {"id": rid, "object": "realtime.response", "status": "in_progress", "status_details": None,
                    "output": [], "conversation_id": None,
                    "output_modalities": options.get("output_modalities", self.session["output_modalities"]),
                    "usage": None, "metadata": options.get("metadata")}
        await self.send({"type": "response.created", "response": dict(response)})
        item = None
        try:
            kind, what = self.plan()
            if kind == "call":
                item = {"id": new_id("item"), "object": "realtime.item", "type": "function_call",
                        "status": "in_progress", "name": what.get("name", "tool"), "call_id": new_id("call"),
                        "arguments": ""}
                await self.function_call(rid, item)
            else:
                item = {"id": new_id("item"), "object": "realtime.item", "type": "message",
                        "status": "in_progress", "role": "assistant", "content": []}
                await self.text(rid, item, what)
            self.items.append(item)
            response["output"] = [item]
            response["status"] = "completed"
            response["usage"] = {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0}
            self.finished(rid)
            await self.send({"type": "response.done", "response": response})
        except asyncio.CancelledError:
            if item is not None:
                item["status"] = "incomplete"
                response["output"] = [item]
            response["status"] = "cancelled"
            response["status_details"] = {"type": "cancelled", "reason": "client_cancelled"}
            self.finished(rid)
            if self.bug != "no-done-on-cancel":
                await self.send({"type": "response.done", "response": response})
            if self.bug == "delta-after-done" and item is not None and item["type"] == "message":
                await self.send({"type": "response.output_text.delta", "response_id": rid, "item_id": item["id"],
                                 "output_index": 0, "content_index": 0, "delta": "\n"})

    async def text(self, rid, item, reply):
        ids = {"response_id": rid, "item_id": item["id"], "output_index": 0}
        await self.send({"type": "response.output_item.added", "response_id": rid, "output_index": 0,
                         "item": dict(item)})
        await self.send({"type": "response.content_part.added", **ids, "content_index": 0,
                         "part": {"type": "text", "text": ""}})
        deltas = re.findall(r"\S+\s*|\s+", reply)
        sent = ""
        for d in deltas:
            await asyncio.sleep(PACE)
            sent += d
            item["content"] = [{"type": "output_text", "text": sent}]
            await self.send({"type": "response.output_text.delta", **ids, "content_index": 0, "delta": d})
        done = sent[: len(sent) - len(deltas[-1])] if self.bug == "text-done-mismatch" else sent
        await self.send({"type": "response.output_text.done", **ids, "content_index": 0, "text": done})
        await self.send({"type": "response.content_part.done", **ids, "content_index": 0,
                         "part": {"type": "text", "text": done}})
        item["status"] = "completed"
        await self.send({"type": "response.output_item.done", "response_id": rid, "output_index": 0,
                         "item": dict(item)})

    async def function_call(self, rid, item):
        ids = {"response_id": rid, "item_id": item["id"], "output_index": 0, "call_id": item["call_id"]}
        await self.send({"type": "response.output_item.added", "response_id": rid, "output_index": 0,
                         "item": dict(item)})
        for d in ['{"', 'timezone', '":"', 'UTC', '"}']:
            await asyncio.sleep(PACE)
            item["arguments"] += d
            await self.send({"type": "response.function_call_arguments.delta", **ids, "delta": d})
        await self.send({"type": "response.function_call_arguments.done", **ids, "name": item["name"],
                         "arguments": item["arguments"]})
        item["status"] = "completed"
        await self.send({"type": "response.output_item.done", "response_id": rid, "output_index": 0,
                         "item": dict(item)})


if __name__ == "__main__":
    common.main(make_app)
