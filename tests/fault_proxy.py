"""A fault-injecting HTTP proxy in front of a real OpenAI-compatible server, for the endpoint engine's tests.

Each POST (a generation request) takes the next action from a script; GETs (/v1/models, /version) and POSTs
past the end of the script are forwarded unchanged. Actions:
  "429" / "500" / "503" / "400"  answer with that status and an OpenAI-style error body, without forwarding;
  "reset"                        abort the connection with a TCP RST, without a response;
  "stall"                        hold the request for `stall_s` seconds (past the client's timeout), then drop it;
  "slow"                         wait `slow_s` seconds, then forward (a slow but successful response);
  "429:S" / "503:S"              that status with a `Retry-After: S` header;
  "abort"                        answer 200 with one choice whose finish_reason is "abort" (vLLM's cancelled request);
  "reasoning"                    forward, unless the body has a setting OpenAI's reasoning models refuse (max_tokens,
                                 temperature, top_p, top_k, ...): then a 400 worded as OpenAI's;
  "pass"                         forward.
`always` replaces the script with one action for every POST. `log` records (path, action) per request, `queries`
each request's query string. `root`: GET /v1/models answers with each model's `root` replaced by it (a server
that now serves other weights under the same name).
The proxy runs on its own event loop in a thread of the test process (aiohttp, which vLLM already depends on).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading


class FaultProxy:
    def __init__(self, upstream: str, script: list[str] | None = None, *, always: str | None = None,
                 stall_s: float = 60.0, slow_s: float = 2.0, root: str | None = None):
        self.upstream = upstream.rstrip("/")  # http://host:port (no /v1)
        self.script = list(script or [])
        self.always = always
        self.stall_s = stall_s
        self.slow_s = slow_s
        self.log: list[tuple[str, str]] = []
        self.queries: list[str] = []
        self.root = root
        self.port = _free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the fault proxy did not start")
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)

    def _next_action(self, method: str) -> str:
        if method != "POST":
            return "pass"
        if self.always:
            return self.always
        return self.script.pop(0) if self.script else "pass"

    async def _handle(self, request):
        from aiohttp import web

        action = self._next_action(request.method)
        self.log.append((request.path, action))
        self.queries.append(request.query_string)
        body = await request.read()
        status, _, after = action.partition(":")
        if status in ("429", "500", "503", "400"):
            err = {"error": {"message": f"injected {status}", "type": "injected", "code": int(status)}}
            return web.json_response(err, status=int(status), headers={"Retry-After": after} if after else None)
        if action == "abort":
            return web.json_response({"id": "x", "object": "text_completion", "created": 0, "model": "m",
                                      "choices": [{"index": 0, "text": "", "finish_reason": "abort"}],
                                      "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}})
        if action == "reasoning":
            refused = _reasoning_refusal(json.loads(body))
            if refused:
                return web.json_response({"error": {"message": refused, "type": "invalid_request_error",
                                                     "param": None, "code": "unsupported_parameter"}}, status=400)
        if action == "reset":
            sock = request.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            request.transport.abort()
            raise asyncio.CancelledError
        if action == "stall":
            await asyncio.sleep(self.stall_s)  # the client gives up first and closes the connection
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        if action == "slow":
            await asyncio.sleep(self.slow_s)
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "authorization")}
        async with self._session.request(request.method, self.upstream + request.path_qs, data=body,
                                         headers=headers) as r:
            data = await r.read()
            if self.root is not None and request.method == "GET" and request.path.endswith("/models"):
                doc = json.loads(data)
                for card in doc.get("data", []):
                    card["root"] = self.root
                data = json.dumps(doc).encode()
            return web.Response(body=data, status=r.status, content_type=r.content_type)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        import aiohttp
        from aiohttp import web

        self._stop = asyncio.Event()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()  # stalled handlers are cancelled after shutdown_timeout, not waited for
        await self._session.close()


def _reasoning_refusal(body: dict) -> str | None:
    """OpenAI's 400 for a reasoning model given a setting it does not take (the wording of its API)."""
    if "max_tokens" in body:
        return ("Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' "
                "instead.")
    if body.get("temperature") not in (None, 1):
        return (f"Unsupported value: 'temperature' does not support {body['temperature']} with this model. Only the "
                f"default (1) value is supported.")
    for name in ("top_p", "top_k", "min_p", "repetition_penalty", "stop_token_ids"):
        if name in body:
            return f"Unrecognized request argument supplied: {name}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

