"""Open a local page in headless Chromium over the DevTools protocol: screenshot, evaluate, collect errors.

A small client over aiohttp's websocket (no playwright): one browser process with an empty profile,
one page attached with a flat session. Every console error, uncaught exception, browser log error
and network request of the page is recorded, so a test can assert that a page rendered offline and
cleanly.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--remote-debugging-port=0", "--window-size=1280,900", "--hide-scrollbars")
DEVTOOLS_LINE = re.compile(r"DevTools listening on (ws://\S+)")
START_TIMEOUT_S = 30.0
LOAD_TIMEOUT_S = 30.0


def chromium_binary() -> str | None:
    """The Chromium executable on PATH (Debian's ``chromium``, or ``chromium-browser``), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageVisit:
    """What happened while a page was open."""

    url: str
    errors: list[str] = field(default_factory=list)      # console errors, uncaught exceptions, log errors
    requests: list[str] = field(default_factory=list)    # URLs the page asked for (its own included)
    failed_requests: list[str] = field(default_factory=list)
    value: Any = None                                    # the result of the evaluated expression
    screenshot: bytes | None = None


class DevToolsSession:
    """One page in a headless Chromium, driven over a flat DevTools session."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.session_id = ""
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._event_arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msg.json()
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            elif "method" in data:
                self.events.append((data["method"], data.get("params", {})))
                self._event_arrived.set()

    async def send(self, method: str, params: dict[str, Any] | None = None, browser: bool = False) -> dict[str, Any]:
        """Send one command (to the page's session unless ``browser``) and return its result."""
        message: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params or {}}
        if self.session_id and not browser:
            message["sessionId"] = self.session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message["id"]] = future
        await self.ws.send_json(message)
        reply = await asyncio.wait_for(future, LOAD_TIMEOUT_S)
        if "error" in reply:
            raise RuntimeError(f"DevTools {method}: {reply['error']}")
        return reply.get("result", {})

    async def wait_for_event(self, method: str, after: int) -> None:
        """Wait until an event ``method`` arrives at index ``after`` of :attr:`events` or later."""
        async def seen() -> None:
            while not any(m == method for m, _ in self.events[after:]):
                self._event_arrived.clear()
                await self._event_arrived.wait()
        await asyncio.wait_for(seen(), LOAD_TIMEOUT_S)

    async def close(self) -> None:
        """Stop reading."""
        self._reader.cancel()


async def _visit(ws_url: str, url: str, expression: str | None, screenshot: bool) -> PageVisit:
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        dev = DevToolsSession(ws)
        target = await dev.send("Target.createTarget", {"url": "about:blank"}, browser=True)
        attached = await dev.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
                                  browser=True)
        dev.session_id = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            await dev.send(f"{domain}.enable")
        start = len(dev.events)
        await dev.send("Page.navigate", {"url": url})
        await dev.wait_for_event("Page.loadEventFired", start)
        visit = PageVisit(url)
        if expression is not None:
            result = await dev.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                         "awaitPromise": True})
            if "exceptionDetails" in result:
                raise RuntimeError(f"evaluating the check on {url}: {result['exceptionDetails']}")
            visit.value = result["result"].get("value")
        if screenshot:
            size = (await dev.send("Page.getLayoutMetrics"))["cssContentSize"]
            shot = await dev.send("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
            visit.screenshot = base64.b64decode(shot["data"])
        await asyncio.sleep(0.2)  # late console messages of the page
        _record_events(dev.events[start:], visit)
        await dev.send("Target.closeTarget", {"targetId": target["targetId"]}, browser=True)
        await dev.close()
        return visit


def _record_events(events: list[tuple[str, dict[str, Any]]], visit: PageVisit) -> None:
    for method, p in events:
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            visit.errors.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                        for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = p.get("exceptionDetails", {})
            visit.errors.append(f"exception: {details.get('text')} {details.get('exception', {}).get('description')}")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            visit.errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif method == "Network.requestWillBeSent":
            visit.requests.append(p["request"]["url"])
        elif method == "Network.loadingFailed":
            visit.failed_requests.append(f"{p.get('errorText')} (request {p.get('requestId')})")


class HeadlessChromium:
    """A headless Chromium process with an empty profile; use as a context manager."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        # Chromium's helper processes may still write to the profile while the browser exits: cleanup tolerates it.
        self._profile = tempfile.TemporaryDirectory(prefix="curator-chromium-", ignore_cleanup_errors=True)
        self._proc: subprocess.Popen[str] | None = None
        self.ws_url = ""

    def __enter__(self) -> HeadlessChromium:
        self._proc = subprocess.Popen([self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile.name}",
                                       "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert self._proc.stderr is not None
        lines = []
        for line in self._proc.stderr:  # Chromium prints the address on stderr once it listens
            lines.append(line)
            match = DEVTOOLS_LINE.search(line)
            if match:
                self.ws_url = match.group(1)
                break
        if not self.ws_url:
            self.__exit__()
            raise RuntimeError("chromium exited without a DevTools address:\n" + "".join(lines[-20:]))
        # Keep draining stderr so that Chromium never blocks on a full pipe.
        threading.Thread(target=self._drain, args=(self._proc.stderr,), daemon=True).start()
        return self

    @staticmethod
    def _drain(stream: IO[str]) -> None:
        for _ in stream:
            pass

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._profile.cleanup()

    def visit(self, page: Path | str, expression: str | None = None, screenshot: bool = False) -> PageVisit:
        """Open a file (or URL), wait for its load event, evaluate ``expression``, optionally screenshot it."""
        url = Path(page).resolve().as_uri() if isinstance(page, Path) else page
        return asyncio.run(_visit(self.ws_url, url, expression, screenshot))
