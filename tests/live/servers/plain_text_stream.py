"""Seed-000 shape (examples/plain-text-stream): a plain-text chat stream at /api/v1/chat/{user_id}.

An auth middleware (pure ASGI, it runs on HTTP requests and WebSocket upgrades alike) requires
`Authorization: Bearer <HS256 JWT>`; without a valid one the upgrade is refused with HTTP 401 and a JSON
`{"detail": ...}` body (a denial response: the handshake never completes). The route checks that the path
user id equals the token's `sub`; a mismatch is accepted and then closed with 1008 (so the client sees the
close code and its reason; closing before accept() would turn it into a bare 403). Each text frame the
client sends is answered by several plain-text frames, word by word (`send_text(chunk)`), with no end
marker: "You said: <text>. Earlier you said: <the previous message>. ...". The conversation of a user is saved when
the socket closes (`except WebSocketDisconnect`), so a later connection of the same user continues it.
"""

import asyncio

from fastapi import APIRouter, FastAPI, WebSocket, WebSocketDisconnect
from starlette.datastructures import Headers
from starlette.responses import JSONResponse

import common

BUGS = {
    "single-response": "the whole reply is sent as one frame instead of streamed",
    "route-not-mounted": "the chat router is never included (Starlette answers an upgrade to an unknown path 403)",
    "auth-middleware-blocks-upgrade": "the middleware treats every upgrade as unauthenticated (401) though the header is valid",
    "auth-middleware-ignores-websocket": "the middleware skips WebSocket scopes: an upgrade without a token is accepted",
    "no-accept": "the handler closes the socket before accept(): Starlette answers the upgrade 403",
    "exception-before-accept": "the handler reads a user the middleware never stored and raises before accept(): 500",
    "no-user-check": "the path user id is never compared with the token's subject",
    "disconnect-unhandled": "no `except WebSocketDisconnect`: a client's close raises, and the conversation is never saved",
}

CHUNK_PACE = 0.005  # seconds between the chunks of the simulated model's stream


class BearerAuth:
    """Requires a valid bearer token on every HTTP request and WebSocket upgrade (like the seed's
    Firebase middleware); stores the claims in `scope["state"]["user"]`."""

    def __init__(self, app, bug):
        self.app = app
        self.bug = bug

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket" and self.bug == "auth-middleware-ignores-websocket":
            return await self.app(scope, receive, send)
        claims = common.decode_jwt(common.bearer(Headers(scope=scope)))
        if self.bug == "auth-middleware-blocks-upgrade" and scope.get("method") is None:
            claims = None  # the defect: "no method" is taken for "not an API call we know": refused
        if claims is None:
            refusal = JSONResponse(
                {"detail": "Not authenticated"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
            if scope["type"] == "websocket":
                await WebSocket(scope, receive, send).send_denial_response(refusal)
            else:
                await refusal(scope, receive, send)
            return
        scope.setdefault("state", {})["user"] = claims
        await self.app(scope, receive, send)


def reply_chunks(text, earlier):
    """The simulated model's reply, word by word; it remembers the conversation's previous message."""
    reply = f"You said: {text}."
    if earlier:
        reply += f" Earlier you said: {earlier}."
    reply += " Here is what I think about it."
    words = reply.split(" ")
    return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]


def make_app(bug):
    app = FastAPI()
    router = APIRouter()
    saved = {}  # user id -> the messages of the user's conversation, saved on disconnect

    @router.websocket("/chat/{user_id}")
    async def chat(ws: WebSocket, user_id: str):
        if bug == "exception-before-accept":
            claims = ws.scope["state"]["firebase_user"]  # KeyError: the middleware stores "user"
        else:
            claims = ws.scope.get("state", {}).get("user") or {}
        if bug == "no-accept":
            await ws.close(code=1008)  # before accept(): the client gets a bare HTTP 403
            return
        await ws.accept()
        if bug != "no-user-check" and user_id != claims.get("sub"):
            await ws.close(code=1008, reason="user id does not match the token")
            return
        history = list(saved.get(user_id, []))
        if bug == "disconnect-unhandled":
            while True:  # WebSocketDisconnect propagates: a traceback, and nothing is saved
                await converse(ws, history, await ws.receive_text())
        try:
            while True:
                await converse(ws, history, await ws.receive_text())
        except WebSocketDisconnect:
            saved[user_id] = history  # persist the conversation context, then exit quietly

    async def converse(ws, history, text):
        chunks = reply_chunks(text.strip(), history[-1] if history else None)
        history.append(text.strip())
        if bug == "single-response":
            await ws.send_text("".join(chunks))
            return
        for chunk in chunks:
            await asyncio.sleep(CHUNK_PACE)
            await ws.send_text(chunk)

    if bug != "route-not-mounted":
        app.include_router(router, prefix="/api/v1")
    return BearerAuth(app, bug)


if __name__ == "__main__":
    common.main(make_app)
