"""Shared helpers of the live pack servers (tests/live/servers/*.py).

A server module defines `BUGS = {name: one-line description}` and an app factory `make_app(bug)` (bug is
None for the correct server, else one of BUGS), then ends with `common.main(make_app)`.

`main` parses the command line:
  --bug NAME    serve the variant with that defect (an unknown name exits 2 listing the known ones)
  --list-bugs   print BUGS as one JSON object and exit 0
binds 127.0.0.1 port 0, prints exactly one line `LISTENING <port>` to stdout, and serves the app with uvicorn
(websockets implementation) until stdin closes or SIGTERM arrives.

JWTs are HS256 with the secret in env LIVE_JWT_SECRET (see `decode_jwt`).
"""

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
import warnings

import jwt
import uvicorn

# ws="websockets" is the implementation the seeds' servers run; uvicorn marks it deprecated.
warnings.filterwarnings("ignore", message="The `websockets` implementation is deprecated")


def main(app_factory):
    """Runs the server whose app factory is `app_factory(bug)`; BUGS comes from the factory's module."""
    bugs = getattr(sys.modules[app_factory.__module__], "BUGS", {})
    parser = argparse.ArgumentParser(description=(sys.modules[app_factory.__module__].__doc__ or "").strip())
    parser.add_argument("--bug", default=None, help="serve the variant with this defect")
    parser.add_argument("--list-bugs", action="store_true", help="print the known bugs as JSON and exit")
    args = parser.parse_args()
    if args.list_bugs:
        print(json.dumps(bugs, indent=2, sort_keys=True))
        return
    if args.bug is not None and args.bug not in bugs:
        known = ", ".join(sorted(bugs)) or "(none)"
        print(f"unknown bug {args.bug!r}; known bugs: {known}", file=sys.stderr)
        sys.exit(2)

    app = app_factory(args.bug)
    # IPPROTO_TCP explicitly: asyncio turns TCP_NODELAY on only for sockets whose proto says TCP, and
    # without it Nagle's algorithm holds every frame after the first for ~40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = uvicorn.Config(app, log_level="warning", ws="websockets", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)

    def watch_stdin():
        # The parent holds our stdin open; EOF means it is gone (or asks us to stop).
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        server.should_exit = True

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"LISTENING {sock.getsockname()[1]}", flush=True)
    asyncio.run(server.serve(sockets=[sock]))


def jwt_secret():
    """The HS256 secret shared with the harness (env LIVE_JWT_SECRET); exits 2 when it is not set."""
    secret = os.environ.get("LIVE_JWT_SECRET")
    if not secret:
        print("LIVE_JWT_SECRET is not set (the HS256 secret of the tokens)", file=sys.stderr)
        sys.exit(2)
    return secret


def decode_jwt(token, required=("sub",)):
    """The claims of a valid HS256 token signed with LIVE_JWT_SECRET, or None when the token is missing,
    malformed, badly signed, expired or lacks one of the `required` claims."""
    if not token:
        return None
    try:
        claims = jwt.decode(token, jwt_secret(), algorithms=["HS256"])
    except jwt.PyJWTError:
        return None
    if any(claims.get(name) in (None, "") for name in required):
        return None
    return claims


def bearer(headers):
    """The token of an `Authorization: Bearer <token>` header (any header mapping), or None."""
    value = headers.get("authorization")
    if not value or not value.startswith("Bearer "):
        return None
    return value[len("Bearer "):].strip() or None
