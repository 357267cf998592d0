"""Open `lmzip explain --html` pages in a real headless browser and check them.

    python scripts/explain_browser_check.py [FILE] [--page PAGE.html] [--screenshot docs/explain.png]

Without --page, runs `lmzip explain FILE --html TMP` first (FILE: the first 2600 bytes
of ../shared/corpus/alice29.txt by default; the model is needed). Then Debian's chromium
(`apt-get install chromium`) loads the page headless through the DevTools protocol on a
pipe (no network, no extra Python packages) and checks that

- the page rendered: its script ran and tagged <body> with the token count;
- nothing went to the console as an error, no exception was thrown, and the page's own
  error hook (an inline onerror that writes into #errors) stayed empty;
- the page fetched nothing but itself (self-contained);
- hovering a costly token shows the tooltip with its cost and the model's top guesses;

and saves a screenshot with the tooltip open. Exit status 0 when every check passes,
1 when one fails, 77 (skipped) when chromium is not installed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = ROOT.parent / "shared" / "corpus" / "alice29.txt"
DEFAULT_BYTES = 2600
SKIP = 77
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class DevTools:
    """The DevTools protocol over --remote-debugging-pipe: JSON messages separated by NUL
    bytes, commands written to the browser's fd 3, answers and events read from its fd 4."""

    def __init__(self, browser: str, profile: str, width: int, height: int) -> None:
        to_browser_r, self._w = os.pipe()
        self._r, from_browser_w = os.pipe()
        # The child gets the pipe ends as fd 3 and fd 4: moved there before exec (via
        # spare numbers, in case one already is 3 or 4); close_fds=False keeps them, and
        # every other descriptor of this process is close-on-exec (os.pipe's default).
        args = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--mute-audio",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "--remote-debugging-pipe",
            "about:blank",
        ]

        def child_fds() -> None:
            read_end, write_end = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=child_fds,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("the browser did not answer in time")
            block = os.read(self._r, 1 << 16)
            if not block:
                raise ConnectionError("the browser closed the DevTools pipe")
            self._buf += block
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: str | None = None, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            ev = self._read_message(deadline)
            if ev.get("method") == method:
                return ev
            self.events.append(ev)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (OSError, TimeoutError, ConnectionError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    """Errors among the collected events: exceptions, console.error, error log entries."""
    out = []
    for ev in events:
        method, params = ev.get("method"), ev.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            out.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            out.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}".strip())
    return out


FIND_TOKEN = """(function(){
  var best=null, bestBits=-1, T=JSON.parse(document.getElementById('data').textContent).tokens;
  var spans=document.querySelectorAll('#text span[data-t]');
  for (var i=0;i<spans.length;i++){
    var r=spans[i].getClientRects()[0], t=T[+spans[i].dataset.t];  // a wrapped span: its first box
    if (!r) continue;
    if (!t || r.width<12 || r.top<window.innerHeight*0.35 || r.bottom>window.innerHeight*0.75) continue;
    if (t[0]>bestBits){bestBits=t[0];best=r;}
  }
  return best ? JSON.stringify({x:best.left+best.width/2, y:best.top+best.height/2, bits:bestBits}) : "";
})()"""

PAGE_STATE = """JSON.stringify({
  rendered: document.body.getAttribute('data-rendered'),
  hook: (window.lmzipErrors || ['hook missing']).join('; '),
  errorsDiv: document.getElementById('errors').textContent,
  tokens: document.querySelectorAll('#text span[data-t]').length,
  lines: document.querySelectorAll('#text .ln').length,
  summaryRows: document.querySelectorAll('aside table tr').length,
  tip: document.getElementById('tip').style.display,
  tipText: document.getElementById('tip').textContent,
  guesses: document.querySelectorAll('#tip tr').length
})"""


def evaluate(dt: DevTools, session: str, expression: str) -> Any:
    res = dt.call("Runtime.evaluate", session, expression=expression, returnByValue=True)
    if "exceptionDetails" in res:
        raise RuntimeError(f"evaluate failed: {res['exceptionDetails'].get('text')}")
    return res["result"].get("value")


def check_page(browser: str, page: Path, screenshot: Path | None, width: int, height: int) -> list[str]:
    """Load the page, hover a costly token, take the screenshot; returns the failures."""
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lmzip-chromium-") as profile:
        dt = DevTools(browser, profile, width, height)
        try:
            target = dt.call("Target.createTarget", url="about:blank")["targetId"]
            session = dt.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                dt.call(f"{domain}.enable", session)
            metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
            dt.call("Emulation.setDeviceMetricsOverride", session, **metrics)
            url = page.resolve().as_uri()
            dt.call("Page.navigate", session, url=url)
            dt.wait_event("Page.loadEventFired")
            state = json.loads(evaluate(dt, session, PAGE_STATE))
            if not state["rendered"] or int(state["rendered"]) <= 0:
                failures.append(f"the page's script did not run to the end (data-rendered={state['rendered']!r})")
            if state["tokens"] <= 0 or state["lines"] <= 0 or state["summaryRows"] <= 0:
                failures.append(f"nothing rendered: {state}")
            if state["hook"] or state["errorsDiv"]:
                failures.append(f"the page's error hook caught: {state['hook'] or state['errorsDiv']}")
            spot = evaluate(dt, session, FIND_TOKEN)
            if not spot:
                failures.append("no token to hover in the visible part of the page")
            else:
                where = json.loads(spot)
                dt.call("Input.dispatchMouseEvent", session, type="mouseMoved", x=where["x"], y=where["y"])
                hovered = json.loads(evaluate(dt, session, PAGE_STATE))
                if hovered["tip"] != "block" or "bits" not in hovered["tipText"]:
                    failures.append(f"hovering a token showed no tooltip: {hovered['tip']!r} {hovered['tipText']!r}")
                elif hovered["guesses"] < 1:
                    failures.append("the tooltip lists no top guesses")
                print(f"hovered a {where['bits']:.1f}-bit token: {hovered['tipText'][:120]!r}")
            if screenshot is not None:
                shot = dt.call("Page.captureScreenshot", session, format="png")
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
                print(f"screenshot: {screenshot}")
            requests = [
                ev["params"]["request"]["url"]
                for ev in dt.events
                if ev.get("method") == "Network.requestWillBeSent"
                and not ev["params"]["request"]["url"].startswith((url, "data:", "about:"))
            ]
            if requests:
                failures.append(f"the page fetched other resources: {requests[:5]}")
            failures += console_errors(dt.events)
            print(f"rendered {state['tokens']} token spans on {state['lines']} lines")
        finally:
            dt.close()
    return failures


def make_page(source: Path, nbytes: int, out: Path) -> None:
    """`lmzip explain --html` of the first `nbytes` of `source`."""
    (out.parent / source.name).write_bytes(source.read_bytes()[:nbytes])
    cmd = [sys.executable, "-m", "lmzip", "explain", "-q", "--threads", "1", "--html", str(out.resolve()), source.name]
    subprocess.run(cmd, check=True, cwd=out.parent, env={**os.environ, "OMP_NUM_THREADS": "1"})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?", type=Path, default=DEFAULT_INPUT, help="text to explain (default alice29.txt)")
    ap.add_argument("--bytes", type=int, default=DEFAULT_BYTES, help="explain only the first BYTES of FILE")
    ap.add_argument("--page", type=Path, help="check this page instead of making one")
    ap.add_argument("--screenshot", type=Path, default=ROOT / "docs" / "explain.png")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=860)
    args = ap.parse_args()
    browser = find_browser()
    if browser is None:
        print(f"SKIP: no headless browser ({', '.join(BROWSERS)}); on Debian: apt-get install chromium")
        return SKIP
    with tempfile.TemporaryDirectory(prefix="lmzip-explain-") as tmp:
        page = args.page
        if page is None:
            if not args.file.is_file():
                print(f"SKIP: {args.file} not found; pass a text FILE or --page PAGE.html")
                return SKIP
            page = Path(tmp) / "explain.html"
            make_page(args.file, args.bytes, page)
        failures = check_page(browser, page, args.screenshot, args.width, args.height)
    for f in failures:
        print(f"FAIL: {f}")
    print("OK: rendered without console errors" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
