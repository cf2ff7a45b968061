"""Shape B (examples/typing-indicator): connection_established / typing_indicator / ai_response.

`/api/v1/ws/{user_id}` with no token: the user id is verified (a well-formed id gets its user context, created
on first contact; a malformed one is closed with 1008 "User verification failed" after the accept). Client
messages are `{message, metadata?}` (no type). Each message is answered by typing true, one `ai_response`,
typing false; a JSON object without `message` gets `error {error_code: invalid_format}`; an empty message is
skipped silently; invalid JSON ends the session with `disconnection {reason: session_ended}`. A second socket
of the same user replaces the older one (`disconnection {reason: reconnection}`, then close).
REST: `POST /api/v1/ws/broadcast {message}` pushes `broadcast` to every socket; `GET /api/v1/ws/status`
reports `{active_connections, connected_users}`.
"""

import asyncio
import json
import re
from datetime import datetime, timezone

from fastapi import APIRouter, Body, FastAPI, WebSocket, WebSocketDisconnect

import common

BUGS = {
    "route-not-mounted": "the websocket router is never included in the app (no route at /api/v1/ws/{user_id})",
    "verify-before-accept": "a failed user verification closes before accept(): an HTTP 403 instead of close 1008",
    "reconnection-keeps-older": "a second socket of the same user does not close the older one",
    "disconnected-never-removed": "a closed socket is never removed: the status endpoint still lists its user",
    "bad-json-drops-socket": "invalid JSON closes the socket with no disconnection event",
    "wrong-error-code": "a message without `message` is answered error_code INVALID_FORMAT (wrong case)",
    "typing-left-on": "the typing indicator is never switched off after the reply",
    "response-before-typing": "the reply is sent before typing true (typing true, false follow it)",
}

USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def now():
    return datetime.now(timezone.utc).isoformat()


def reply_for(text):
    return {
        "type": "ai_response",
        "message": f"Here is how to go about '{text.strip()}': start small and practise every day.",
        "response_type": "guidance",
        "confidence_score": 0.87,
        "metadata": {"model": "simulated"},
        "suggested_actions": [{"label": "Start a course"}],
        "follow_up_questions": ["Which language do you know already?"],
        "timestamp": now(),
    }


class ConnectionManager:
    """The sockets by user id (one per user), as in the seed's ConnectionManager."""

    def __init__(self, bug):
        self.bug = bug
        self.active = {}

    async def connect(self, user_id, ws):
        # The newer socket is registered first: a broadcast never reaches the older one after its
        # `disconnection` (nothing may follow that event).
        older = self.active.get(user_id)
        self.active[user_id] = ws
        if older is not None and older is not ws and self.bug != "reconnection-keeps-older":
            # In the background: the closing handshake of the older socket (which may take until
            # its client closes the TCP connection) must not hold up the newer one.
            asyncio.create_task(self.retire(older))

    async def retire(self, older):
        try:
            await older.send_json({"type": "disconnection", "reason": "reconnection", "timestamp": now()})
            await older.close(code=1000, reason="reconnection")
        except (RuntimeError, WebSocketDisconnect, OSError):
            pass  # the older socket was already gone

    def disconnect(self, user_id, ws):
        if self.bug == "disconnected-never-removed":
            return
        if self.active.get(user_id) is ws:
            del self.active[user_id]

    async def broadcast(self, message):
        sent = 0
        for user_id, ws in list(self.active.items()):
            if self.active.get(user_id) is not ws:
                continue  # replaced or gone while we were sending to others: it got its last event
            try:
                await ws.send_json({"type": "broadcast", "message": message, "timestamp": now()})
                sent += 1
            except (RuntimeError, WebSocketDisconnect, OSError):
                pass
        return sent


def make_app(bug):
    app = FastAPI()
    router = APIRouter(prefix="/api/v1/ws")
    manager = ConnectionManager(bug)

    @router.get("/status")
    async def status():
        return {"active_connections": len(manager.active), "connected_users": sorted(manager.active)}

    @router.post("/broadcast")
    async def broadcast(body: dict = Body(...)):
        message = body.get("message")
        if not isinstance(message, str) or not message:
            return {"sent": 0, "error": "message required"}
        return {"sent": await manager.broadcast(message)}

    @router.websocket("/{user_id}")
    async def chat(ws: WebSocket, user_id: str):
        if not USER_ID.match(user_id):
            if bug == "verify-before-accept":
                await ws.close(code=1008, reason="User verification failed")  # before accept: HTTP 403
                return
            await ws.accept()
            await ws.close(code=1008, reason="User verification failed")
            return
        await ws.accept()
        # connection_established is the first event: sent before the socket can receive broadcasts.
        await ws.send_json(
            {"type": "connection_established", "message": f"Connected as {user_id}", "timestamp": now()}
        )
        await manager.connect(user_id, ws)
        try:
            while True:
                raw = await ws.receive_text()
                try:
                    data = json.loads(raw)
                except ValueError:
                    if bug == "bad-json-drops-socket":
                        await ws.close(code=1011)
                        return
                    manager.disconnect(user_id, ws)  # before the event: no broadcast may follow it
                    await ws.send_json({"type": "disconnection", "reason": "session_ended", "timestamp": now()})
                    await ws.close(code=1000, reason="session_ended")
                    return
                text = data.get("message") if isinstance(data, dict) else None
                if not isinstance(text, str):
                    code = "INVALID_FORMAT" if bug == "wrong-error-code" else "invalid_format"
                    await ws.send_json(
                        {"type": "error", "message": "Expected {message, metadata?}", "error_code": code,
                         "timestamp": now()}
                    )
                    continue
                if not text.strip():
                    continue  # skipped silently, as the shape does
                typing_on = {"type": "typing_indicator", "is_typing": True, "timestamp": now()}
                typing_off = {"type": "typing_indicator", "is_typing": False, "timestamp": now()}
                await asyncio.sleep(0.005)  # the simulated conversation manager thinks
                if bug == "response-before-typing":
                    await ws.send_json(reply_for(text))
                    await ws.send_json(typing_on)
                    await ws.send_json(typing_off)
                    continue
                await ws.send_json(typing_on)
                await asyncio.sleep(0.005)
                await ws.send_json(reply_for(text))
                if bug != "typing-left-on":
                    await ws.send_json(typing_off)
        except WebSocketDisconnect:
            pass
        finally:
            manager.disconnect(user_id, ws)

    if bug != "route-not-mounted":
        app.include_router(router)
    return app


if __name__ == "__main__":
    common.main(make_app)
