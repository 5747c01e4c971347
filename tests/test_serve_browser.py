"""The page at ``/`` in a real browser: headless Chromium opens it, speaks a text (streamed
PCM played with Web Audio) and offers the WAV for download. Chromium is driven through the
DevTools protocol over ``--remote-debugging-pipe`` (JSON messages on fds 3 and 4, each ended
by a NUL byte), so no WebSocket client is needed. Skipped where Chromium is not installed
(Debian: ``apt-get install chromium``)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from tests.serve_support import ThreadServer, serve_config, tiny_checkpoint

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed "
                                "(Debian: apt-get install chromium)")


class DevTools:
    """A headless Chromium and the DevTools protocol over its pipe."""

    def __init__(self, profile: str):
        to_child, self._out = os.pipe()  # we write commands, Chromium reads fd 3
        self._in, from_child = os.pipe()  # Chromium writes fd 4, we read

        def give_fds() -> None:  # in the child: the pipe ends at the fds Chromium expects
            # Out of the way first (either end may itself be fd 3 or 4), then into place;
            # dup2 makes them inheritable.
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child, from_child)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--autoplay-policy=no-user-gesture-required",
             "--remote-debugging-pipe", "about:blank"],
            preexec_fn=give_fds, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._id = 0

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:  # skip events until our answer
            reply = self._read()
            if reply.get("id") == self._id:
                assert "error" not in reply, reply
                return reply["result"]

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            data = os.read(self._in, 65536)
            assert data, "Chromium closed the DevTools pipe"
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(line)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._in)
        os.close(self._out)


@pytest.fixture
def server(tmp_path):
    srv = ThreadServer(serve_config(tiny_checkpoint(tmp_path), "threads=1"))
    yield srv
    srv.stop()


def test_page_plays_while_streaming_and_offers_the_download(server, tmp_path):
    browser = DevTools(str(tmp_path / "profile"))
    try:
        url = f"http://127.0.0.1:{server.port}/?autoplay=1&text=Hello%20there.%20A%20second%20sentence."
        target = browser.call("Target.createTarget", {"url": url})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

        def page(expression: str) -> object:
            return browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                session)["result"].get("value")

        deadline = time.monotonic() + 90
        status = ""
        while not status.startswith(("done", "error")):
            assert time.monotonic() < deadline, f"page still says {status!r}"
            time.sleep(0.25)
            status = page("document.getElementById('status')?.textContent ?? ''") or ""
        assert status.startswith("done:"), status
        found = re.search(r"done: (\d+) samples .* in (\d+) ms, first audio after (\d+) ms", status)
        assert found, status
        samples, total_ms, first_ms = (int(x) for x in found.groups())
        assert first_ms < total_ms  # it played while the rest was still coming
        assert samples > 22050 // 2
        assert page("document.getElementById('voice').value") == "neurotts"
        link = page("[document.getElementById('download').hidden, document.getElementById('download').href]")
        assert link[0] is False and link[1].startswith("blob:")
        # The download is a WAV with every sample that was played.
        size = browser.call("Runtime.evaluate", {
            "expression": "fetch(document.getElementById('download').href).then(r => r.blob()).then(b => b.size)",
            "awaitPromise": True, "returnByValue": True}, session)["result"]["value"]
        assert size == 44 + 2 * samples
    finally:
        browser.close()
