"""Run code in a kernel of a live Jupyter server through its REST + websocket API (as a browser does)."""

from __future__ import annotations

import asyncio
import json
import uuid

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


async def run_code(server_url: str, token: str, code: str, timeout: float = 60) -> str:
    """Start a kernel on the server at `server_url` (…/user/NAME/), run `code`, return its stdout."""
    headers = {"Authorization": f"token {token}"}
    r = requests.post(f"{server_url}api/kernels", headers=headers, json={"name": "python3"}, timeout=30)
    r.raise_for_status()
    kernel_id = r.json()["id"]
    try:
        ws_url = f"{server_url.replace('http', 'ws', 1)}api/kernels/{kernel_id}/channels"
        conn = await websocket_connect(HTTPRequest(ws_url, headers=headers, request_timeout=timeout))
        msg_id = uuid.uuid4().hex
        conn.write_message(
            json.dumps(
                {
                    "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                               "session": uuid.uuid4().hex, "version": "5.3"},
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False, "store_history": False,
                                "user_expressions": {}, "allow_stdin": False},
                    "channel": "shell",
                }
            )
        )
        out = []
        while True:
            raw = await asyncio.wait_for(conn.read_message(), timeout)
            if raw is None:
                raise RuntimeError("kernel websocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                raise RuntimeError("\n".join(msg["content"]["traceback"]))
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
    finally:
        requests.delete(f"{server_url}api/kernels/{kernel_id}", headers=headers, timeout=30)
