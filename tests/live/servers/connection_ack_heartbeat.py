"""Shape D (examples/connection-ack-heartbeat): a room chat at /api/v1/ws/chat/{room_id}?token=<jwt>.

The upgrade is accepted first; then a missing token closes 4001, an invalid or expired one 4003, a fourth
connection of one user 1008 "Too many connections". A connection gets `connection_ack`, then a server
`heartbeat` every LIVE_HEARTBEAT_INTERVAL seconds (default 30). Client frames: `message {content (1-2000
chars), user_id, username?, metadata?}` (echoed to the room, then the assistant's whole reply `message
{user_id: "AI"}` to the room), `typing` (to the other members), `heartbeat {client_timestamp?}` (answered by
`heartbeat_ack`). Errors keep the connection open: INVALID_JSON, MESSAGE_PARSE_ERROR, UNKNOWN_MESSAGE_TYPE,
MESSAGE_TOO_LARGE (over 64 KB), RATE_LIMIT_EXCEEDED (over 60 messages a minute on a connection).
"""

import asyncio
import json
import os
import time
import uuid
from collections import deque
from datetime import datetime, timezone

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

import common

BUGS = {
    "close-before-accept": "a missing or invalid token is closed before accept(): HTTP 403 instead of 4001/4003",
    "tokens-rejected": "every valid token is rejected with close 4003 (the claims are read from the wrong place)",
    "ack-not-first": "a `system` welcome is sent before `connection_ack`",
    "bad-json-drops-socket": "invalid JSON closes the connection (1011) with no error frame",
    "unknown-type-ignored": "a frame of an unknown type is silently ignored (no UNKNOWN_MESSAGE_TYPE)",
    "wrong-error-code": "invalid JSON is reported as MESSAGE_PARSE_ERROR instead of INVALID_JSON",
    "no-size-limit": "the 64 KB limit is not enforced: a huge message gets MESSAGE_PARSE_ERROR, not MESSAGE_TOO_LARGE",
    "no-rate-limit": "the 60-a-minute rate limit is not enforced",
    "no-connection-limit": "a fourth connection of one user is accepted",
    "no-heartbeat": "the server never sends its periodic `heartbeat`",
}

MAX_FRAME = 64 * 1024
MAX_CONTENT = 2000
RATE_LIMIT = 60
RATE_WINDOW = 60.0
MAX_CONNECTIONS_PER_USER = 3


def now_iso():
    return datetime.now(timezone.utc).isoformat()


def now_ms():
    return int(time.time() * 1000)


class Member:
    def __init__(self, ws, user_id, username):
        self.ws = ws
        self.user_id = user_id
        self.username = username
        self.lock = asyncio.Lock()

    async def send(self, event):
        async with self.lock:
            await self.ws.send_text(json.dumps(event))


def make_app(bug):
    app = FastAPI()
    rooms = {}  # room id -> set of Member
    per_user = {}  # user id -> open connections
    interval = float(os.environ.get("LIVE_HEARTBEAT_INTERVAL", "30"))

    async def to_room(room_id, event, skip=None):
        for m in list(rooms.get(room_id, ())):
            if m is not skip:
                try:
                    await m.send(event)
                except Exception:
                    pass

    async def heartbeats(member):
        while True:
            await asyncio.sleep(interval)
            await member.send({"type": "heartbeat", "timestamp": now_iso()})

    async def refuse(ws, code, reason):
        if bug != "close-before-accept":
            await ws.accept()
        await ws.close(code=code, reason=reason)

    @app.websocket("/api/v1/ws/chat/{room_id}")
    async def chat(ws: WebSocket, room_id: str):
        token = ws.query_params.get("token")
        if not token:
            await refuse(ws, 4001, "Missing token")
            return
        claims = common.decode_jwt(token)
        if bug == "tokens-rejected":
            claims = None
        if claims is None:
            await refuse(ws, 4003, "Invalid or expired token")
            return
        user_id = str(claims["sub"])
        await ws.accept()
        if bug != "no-connection-limit" and per_user.get(user_id, 0) >= MAX_CONNECTIONS_PER_USER:
            await ws.close(code=1008, reason="Too many connections")
            return
        per_user[user_id] = per_user.get(user_id, 0) + 1
        member = Member(ws, user_id, claims.get("name", user_id))
        beat = None
        try:
            if bug == "ack-not-first":
                await member.send({"type": "system", "content": f"Welcome to {room_id}", "level": "info"})
            await member.send({
                "type": "connection_ack",
                "user_id": user_id,
                "session_id": str(uuid.uuid4()),
                "server_info": {"server_time": now_iso(), "heartbeat_interval": interval},
            })
            await to_room(room_id, {"type": "system", "content": f"{user_id} joined the room", "level": "info"})
            rooms.setdefault(room_id, set()).add(member)
            if bug != "no-heartbeat":
                beat = asyncio.create_task(heartbeats(member))
            await serve(member, room_id)
        except WebSocketDisconnect:
            pass
        finally:
            if beat:
                beat.cancel()
            rooms.get(room_id, set()).discard(member)
            per_user[user_id] -= 1
            await to_room(room_id, {"type": "system", "content": f"{user_id} left the room", "level": "info"})

    async def serve(member, room_id):
        sent = deque()  # times of the messages accepted in the last RATE_WINDOW seconds
        while True:
            frame = await member.ws.receive()
            if frame["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(frame.get("code", 1000))
            raw = frame.get("text")
            if raw is None:
                raw = (frame.get("bytes") or b"").decode("utf-8", "replace")
            if len(raw.encode()) > MAX_FRAME and bug != "no-size-limit":
                await error(member, "MESSAGE_TOO_LARGE", f"Message exceeds {MAX_FRAME} bytes",
                            {"max_bytes": MAX_FRAME})
                continue
            try:
                data = json.loads(raw)
            except ValueError:
                if bug == "bad-json-drops-socket":
                    await member.ws.close(code=1011)
                    return
                code = "MESSAGE_PARSE_ERROR" if bug == "wrong-error-code" else "INVALID_JSON"
                await error(member, code, "Invalid JSON format")
                continue
            kind = data.get("type") if isinstance(data, dict) else None
            if kind == "heartbeat":
                await member.send({"type": "heartbeat_ack", "client_timestamp": data.get("client_timestamp"),
                                   "server_timestamp": now_ms()})
            elif kind == "typing":
                if not isinstance(data.get("is_typing"), bool):
                    await error(member, "MESSAGE_PARSE_ERROR", "typing needs a boolean is_typing")
                    continue
                await to_room(room_id, {"type": "typing", "user_id": member.user_id,
                                        "username": str(data.get("username") or member.username),
                                        "is_typing": data["is_typing"]}, skip=member)
            elif kind == "message":
                content = data.get("content")
                if not isinstance(content, str) or not 1 <= len(content) <= MAX_CONTENT:
                    await error(member, "MESSAGE_PARSE_ERROR", f"content must be 1-{MAX_CONTENT} characters")
                    continue
                t = time.monotonic()
                while sent and t - sent[0] > RATE_WINDOW:
                    sent.popleft()
                if len(sent) >= RATE_LIMIT and bug != "no-rate-limit":
                    await error(member, "RATE_LIMIT_EXCEEDED", f"More than {RATE_LIMIT} messages a minute")
                    continue
                sent.append(t)
                await to_room(room_id, {"type": "message", "content": content, "user_id": member.user_id,
                                        "username": member.username, "message_id": str(uuid.uuid4()),
                                        "timestamp": now_iso()})
                await to_room(room_id, {"type": "message", "content": answer(content), "user_id": "AI",
                                        "username": "Assistant", "message_id": str(uuid.uuid4()),
                                        "timestamp": now_iso()})
            elif bug == "unknown-type-ignored":
                continue
            else:
                await error(member, "UNKNOWN_MESSAGE_TYPE", f"Unknown message type: {kind!r}")

    async def error(member, code, message, details=None):
        event = {"type": "error", "error_code": code, "message": message}
        if details is not None:
            event["details"] = details
        await member.send(event)

    return app


def answer(content):
    return f"You said: {content}"


if __name__ == "__main__":
    common.main(make_app)
