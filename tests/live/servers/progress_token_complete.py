"""Shape A (examples/progress-token-complete): auth message / progress / token / complete at /ws/chat.

Authentication by `?token=<jwt>` or a first message `{"type":"auth","token":"[Bearer ]<jwt>"}`; a turn is
`{"type":"message","message":...}` -> progress (starting, agent_routing, rag_retrieval, generating) -> token* ->
complete. Errors: `error {error, code}` with EMPTY_MESSAGE, PROCESSING_ERROR (also for invalid JSON and an
unknown type: the connection stays open), AUTH_REQUIRED.
"""

import asyncio
import json
import uuid

from fastapi import APIRouter, FastAPI, WebSocket, WebSocketDisconnect

import common

BUGS = {
    "route-not-mounted": "the chat router is never included in the app (no route at /ws/chat)",
    "tokens-rejected": "every valid token is rejected (the user is looked up on the wrong object)",
    "bearer-prefix-kept": "the `Bearer ` prefix of an auth message is not stripped, so the token fails",
    "auth-not-enforced": "a message before authentication is processed instead of answered AUTH_REQUIRED",
    "bad-json-drops-socket": "invalid JSON ends the connection with no error frame",
    "unknown-type-ignored": "a frame of an unknown type is ignored silently",
    "empty-message-streams": "a whitespace-only message is not rejected: a turn starts",
    "partial-response-not-accumulated": "`partial_response` holds only the current token, not the text so far",
}

# Pacing of the simulated model: small, so a turn is quick but the stream is really a stream.
TOKEN_PACE = 0.005


def answer_for(text):
    """The simulated model's answer, as tokens."""
    words = f"You asked: {text.strip()}. Our team answers within one day.".split(" ")
    return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]


def make_app(bug):
    app = FastAPI()
    router = APIRouter()

    def user_of(claims):
        if bug == "tokens-rejected":
            # The field defect: the user id is read from the wrong object (the raw token string).
            return None
        sub = claims["sub"]
        return {"id": sub, "email": f"{sub}@example.com", "name": sub.title()}

    def authenticate(token):
        if token and token.startswith("Bearer ") and bug != "bearer-prefix-kept":
            token = token[len("Bearer "):]
        claims = common.decode_jwt(token)
        return user_of(claims) if claims else None

    async def error(ws, message, code):
        await ws.send_json({"type": "error", "error": message, "code": code})

    async def turn(ws, text, session_id):
        steps = [
            ("starting", "Processing your message"),
            ("agent_routing", "Selecting an agent"),
            ("rag_retrieval", "Searching documents"),
            ("generating", "Generating the answer"),
        ]
        for step, message in steps:
            await ws.send_json({"type": "progress", "step": step, "message": message})
        partial = ""
        for token in answer_for(text):
            await asyncio.sleep(TOKEN_PACE)
            partial += token
            shown = token if bug == "partial-response-not-accumulated" else partial
            await ws.send_json({"type": "token", "token": token, "partial_response": shown})
        await ws.send_json(
            {
                "type": "complete",
                "response": partial,
                "session_id": session_id,
                "metadata": {"agent": "support", "confidence": 0.92, "context": {"documents": 2}},
            }
        )

    @router.websocket("/ws/chat")
    async def chat(ws: WebSocket):
        await ws.accept()
        user = None
        session_id = None
        query_token = ws.query_params.get("token")
        if query_token is not None:
            user = authenticate(query_token)
            if user:
                await ws.send_json({"type": "auth_success", "message": "Authenticated", "user": user})
            else:
                # A refused query token ends the connection (an `auth` message may be retried instead).
                await ws.send_json({"type": "auth_error", "message": "Invalid or expired token"})
                await ws.close(code=1008, reason="Authentication failed")
                return
        try:
            while True:
                raw = await ws.receive_text()
                try:
                    data = json.loads(raw)
                    if not isinstance(data, dict):
                        raise ValueError("not an object")
                except ValueError:
                    if bug == "bad-json-drops-socket":
                        # The field defect: the decode error escapes the handler; the socket just closes.
                        await ws.close(code=1011)
                        return
                    await error(ws, "Invalid JSON", "PROCESSING_ERROR")
                    continue
                kind = data.get("type")
                if kind == "auth":
                    user = authenticate(data.get("token"))
                    if user:
                        await ws.send_json({"type": "auth_success", "message": "Authenticated", "user": user})
                    else:
                        await ws.send_json({"type": "auth_error", "message": "Invalid or expired token"})
                elif kind == "message":
                    if user is None and bug != "auth-not-enforced":
                        await error(ws, "Authentication required", "AUTH_REQUIRED")
                        continue
                    text = data.get("message")
                    if not isinstance(text, str) or (not text.strip() and bug != "empty-message-streams"):
                        await error(ws, "Message must not be empty", "EMPTY_MESSAGE")
                        continue
                    session_id = data.get("session_id") or session_id or f"s-{uuid.uuid4()}"
                    await turn(ws, text, session_id)
                elif bug != "unknown-type-ignored":
                    await error(ws, f"Unknown message type: {kind!r}", "PROCESSING_ERROR")
        except WebSocketDisconnect:
            pass

    if bug != "route-not-mounted":
        app.include_router(router)
    return app


if __name__ == "__main__":
    common.main(make_app)
