"""Shape C (examples/text-chunk-tts): websocket_ready / working / text_chunk / tools / text_completed / TTS.

`/chat/ws`; the token (`?token=` or `Authorization: Bearer`) is checked after accept: HS256, the claims must
hold `customer_id`, else close 4401 "Unauthorized". First frame `websocket_ready {content: "Backend ready",
session_id}`. A request `{request_type, user_input:{prompt, chat_history, session_id?}, user_settings, customer_id}`
streams working, stream_start, [custom_event toolUse, tool_start, tool_result when the prompt asks for an image],
text_chunk*, text_completed, then TTS (tts_started, audio_chunk*, tts_generation_completed, tts_completed) or
tts_not_requested. Control frames are handled while a request runs (the seed's create_task + wait pattern):
ping -> pong, heartbeat ignored, cancel -> cancelled, text_completed (the partial text), tts_not_requested,
close_session -> closing {reason: client_request} then close, stream_resume -> stream_resume_batch.
A request sent while one runs waits for it.
"""

import asyncio
import base64
import json
import time
import uuid
from collections import deque

from fastapi import APIRouter, FastAPI, WebSocket, WebSocketDisconnect

import common

BUGS = {
    "route-not-mounted": "the chat router is never included in the app (no route at /chat/ws)",
    "auth-before-accept": "a bad token is refused by closing before accept(): an HTTP 403 instead of close 4401",
    "cancel-not-concurrent": "the request is awaited inline, so a cancel is read only after the stream ended",
    "tts-before-text": "with TTS on, the audio is generated and completed before the text streams",
    "tool-start-unannounced": "tool_start is sent without the custom_event toolUse right before it",
    "cancel-without-tts-end": "after a cancel, tts_not_requested never comes: the request never completes",
    "pong-without-timestamp": "pong carries no timestamp",
}

CHUNK_PACE = 0.005  # seconds between text chunks of the simulated model
LONG_CHUNKS = 400  # a "long" answer: long enough that a cancel lands mid-stream


def answer_chunks(prompt):
    if "long" in prompt.lower():
        return [f"wave{i} " for i in range(LONG_CHUNKS)]
    words = f"Here is a short fact about '{prompt.strip()}': octopuses have three hearts.".split(" ")
    return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]


def make_app(bug):
    app = FastAPI()
    router = APIRouter()

    @router.websocket("/chat/ws")
    async def chat(ws: WebSocket):
        token = ws.query_params.get("token") or common.bearer(ws.headers)
        claims = common.decode_jwt(token, required=("sub", "customer_id"))
        if claims is None and bug == "auth-before-accept":
            await ws.close(code=4401, reason="Unauthorized")  # before accept: the client sees HTTP 403
            return
        await ws.accept()
        if claims is None:
            await ws.close(code=4401, reason="Unauthorized")
            return
        session_id = f"sess-{uuid.uuid4()}"
        await ws.send_json({"type": "websocket_ready", "content": "Backend ready", "session_id": session_id})
        await Session(ws, session_id, bug).serve()

    if bug != "route-not-mounted":
        app.include_router(router)
    return app


class Session:
    def __init__(self, ws, session_id, bug):
        self.ws = ws
        self.session_id = session_id
        self.bug = bug
        self.running = None  # the task of the request being streamed
        self.waiting = deque()  # requests sent while one runs
        self.closing = False
        self.last_chunks = []  # the chunks of the latest request (for stream_resume)

    async def send(self, event):
        await self.ws.send_json(event)

    async def serve(self):
        receiver = None
        try:
            while True:
                if receiver is None:
                    receiver = asyncio.create_task(self.ws.receive_text())
                waits = {receiver} | ({self.running} if self.running else set())
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if self.running in done:
                    self.running.result()
                    self.running = None
                    if self.waiting:
                        self.running = asyncio.create_task(self.stream(self.waiting.popleft()))
                if receiver in done:
                    raw = receiver.result()  # WebSocketDisconnect when the client is gone
                    receiver = None
                    if not await self.handle(raw):
                        return
        except WebSocketDisconnect:
            pass
        finally:
            for task in (receiver, self.running):
                if task is not None and not task.done():
                    task.cancel()

    async def handle(self, raw):
        """One client frame; False when the session is over."""
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            await self.send({"type": "error", "content": "Invalid JSON", "stage": "validation"})
            return True
        kind = data.get("type")
        if "request_type" in data:
            if self.bug == "cancel-not-concurrent":
                await self.stream(data)  # the defect: nothing else is read until the stream ends
            elif self.running is None:
                self.running = asyncio.create_task(self.stream(data))
            else:
                self.waiting.append(data)
        elif kind == "ping":
            pong = {"type": "pong"}
            if self.bug != "pong-without-timestamp":
                pong["timestamp"] = time.time()
            await self.send(pong)
        elif kind == "heartbeat":
            pass
        elif kind == "cancel":
            if self.bug == "cancel-not-concurrent":
                # The naive handler answers as if the request were still running.
                await self.cancelled_answer(self.session_id, "".join(self.last_chunks))
            elif self.running is not None:
                self.running.cancel()
        elif kind == "close_session":
            self.closing = True
            if self.running is not None:
                self.running.cancel()
                await asyncio.gather(self.running, return_exceptions=True)
                self.running = None
            await self.send({"type": "closing", "reason": "client_request"})
            await self.ws.close(code=1000, reason="client_request")
            return False
        elif kind == "stream_resume":
            last = data.get("last_chunk_index", -1)
            chunks = [
                {"content": c, "chunk_index": i} for i, c in enumerate(self.last_chunks) if i > last
            ]
            await self.send(
                {
                    "type": "stream_resume_batch",
                    "session_id": self.session_id,
                    "data": {"chunks": chunks, "count": len(chunks), "status": "completed"},
                }
            )
        else:
            await self.send({"type": "error", "content": f"Unknown message type: {kind!r}", "stage": "validation"})
        return True

    async def cancelled_answer(self, sid, text):
        await self.send({"type": "cancelled", "content": "Request cancelled by the user", "session_id": sid})
        await self.send({"type": "text_completed", "session_id": sid, "content": text})
        if self.bug != "cancel-without-tts-end":
            await self.send({"type": "tts_not_requested", "session_id": sid})

    async def tts(self, sid):
        await self.send({"type": "tts_started", "session_id": sid})
        for i in range(3):
            audio = base64.b64encode(bytes([i]) * 32).decode()
            await self.send({"type": "audio_chunk", "session_id": sid, "audio": audio, "chunk_index": i})
        await self.send({"type": "tts_generation_completed", "session_id": sid})
        await self.send({"type": "tts_completed", "session_id": sid})

    async def stream(self, req):
        user_input = req.get("user_input") or {}
        sid = user_input.get("session_id") or self.session_id
        prompt = " ".join(p.get("text", "") for p in user_input.get("prompt", []) if isinstance(p, dict))
        settings = req.get("user_settings") or {}
        tts_on = bool((settings.get("tts") or {}).get("enabled"))
        self.last_chunks = []
        text = ""
        try:
            await self.send({"type": "working", "session_id": sid, "content": {"request_type": req["request_type"]}})
            await self.send({"type": "stream_start", "session_id": sid})
            if tts_on and self.bug == "tts-before-text":
                await self.tts(sid)
            if "image" in prompt.lower():
                call_id = f"call-{uuid.uuid4().hex[:8]}"
                if self.bug != "tool-start-unannounced":
                    await self.send(
                        {"type": "custom_event", "session_id": sid, "event_type": "toolUse",
                         "content": {"tool_name": "generate_image"}}
                    )
                await self.send(
                    {"type": "tool_start", "session_id": sid,
                     "data": {"tool_name": "generate_image", "display_text": "Generating an image",
                              "tool_input": {"prompt": prompt}, "call_id": call_id, "provider": "simulated"}}
                )
                await asyncio.sleep(CHUNK_PACE)
                await self.send(
                    {"type": "tool_result", "session_id": sid,
                     "data": {"tool_name": "generate_image", "call_id": call_id,
                              "result": {"status": "success"}, "provider": "simulated"}}
                )
            for i, chunk in enumerate(answer_chunks(prompt)):
                await asyncio.sleep(CHUNK_PACE)
                await self.send({"type": "text_chunk", "session_id": sid, "content": chunk, "chunk_index": i})
                text += chunk
                self.last_chunks.append(chunk)
        except asyncio.CancelledError:
            if not self.closing:
                await self.cancelled_answer(sid, text)
            return
        await self.send({"type": "text_completed", "session_id": sid, "content": text})
        if tts_on and self.bug != "tts-before-text":
            await self.tts(sid)
        elif not tts_on:
            await self.send({"type": "tts_not_requested", "session_id": sid})


if __name__ == "__main__":
    common.main(make_app)
