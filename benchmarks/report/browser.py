"""Checks a page of the HTML report in headless Chromium: console errors, network requests, broken
images, tables wider than their room, a page that scrolls sideways; and takes a full-page screenshot.

The report is opened from file:// on laptops and phones, so what breaks it (a missing image, a
table that pushes a phone layout sideways, a script error, a font or script fetched from the web)
only shows in a browser. Chromium is driven through its DevTools protocol over
``--remote-debugging-pipe`` (it reads commands on fd 3 and writes replies and events on fd 4, each a
JSON text ended by a NUL byte), so that the standard library is all this needs: no websocket
package, no Playwright. The browser is Debian's `chromium` package (`make browser`).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from absl import logging

from rgpkd_jax import files

CHROMIUM_ENV = "RGPKD_JAX_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = "make browser (Debian's chromium package), or set RGPKD_JAX_CHROMIUM to a Chromium executable"
LOCAL_SCHEMES = ("file", "data", "blob", "about")
STDERR_TAIL = 2000
# No first-run UI, no extensions, no traffic of the browser's own (updates, sync, metrics upload):
# the only requests the checker sees are the page's. Scrollbars hidden: they take no layout width,
# so a page measures the same on every platform and its screenshot has none.
FLAGS = ("--headless", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--metrics-recording-only", "--mute-audio",
         "--hide-scrollbars", "--force-color-profile=srgb")

# Resolves once every <img> has loaded or failed (lazy ones are made eager: a full-page screenshot
# shows them all).
IMAGES_SETTLED_JS = """Promise.all(Array.from(document.images, img => {
  img.loading = "eager";
  return img.complete ? null : img.decode().catch(() => null);
})).then(() => document.images.length)"""

# Tables inside an ancestor that scrolls sideways are fine (below <body>, whose overflow is the
# page's own); any other must fit its container's content box and the viewport.
LAYOUT_JS = """(() => {
  const scrolls = el => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
  const inScroller = table => {
    for (let el = table.parentElement; el && el !== document.body; el = el.parentElement)
      if (scrolls(el)) return true;
    return false;
  };
  const tables = [];
  document.querySelectorAll("table").forEach((table, index) => {
    if (inScroller(table)) return;
    let parent = table.parentElement;
    while (parent.clientWidth === 0 && parent.parentElement) parent = parent.parentElement;
    const box = parent.getBoundingClientRect();
    const room = Math.min(box.left + parent.clientLeft + parent.clientWidth
                          - parseFloat(getComputedStyle(parent).paddingRight), window.innerWidth);
    const rect = table.getBoundingClientRect();
    const right = Math.max(rect.right, rect.left + table.scrollWidth);
    const header = table.querySelector("th, caption");
    if (right > room + 1) tables.push({
      name: table.id ? "#" + table.id : header ? JSON.stringify(header.textContent.trim().slice(0, 40))
                                               : "number " + (index + 1),
      right: Math.round(right), room: Math.round(room)});
  });
  return {title: document.title, tables,
          brokenImages: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)
                                                   .map(i => i.getAttribute("src")),
          pageWidth: document.documentElement.scrollWidth,
          viewportMeta: document.querySelector("meta[name=viewport]") !== null};
})()"""


class BrowserError(RuntimeError):
    """Chromium is missing, failed, or did not answer in time; the message names the page and the wait."""


def find_chromium() -> str | None:
    """The Chromium to run: $RGPKD_JAX_CHROMIUM when set (an error if it names nothing runnable),
    else the first of CHROMIUM_NAMES on PATH; None when there is none."""
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise BrowserError(f"{CHROMIUM_ENV}={configured} is not an executable; point it at Chromium "
                               f"or unset it to search PATH for {', '.join(CHROMIUM_NAMES)}")
        return found
    return next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


@dataclasses.dataclass
class PageReport:
    """What one page showed at one viewport; `problems()` says what is wrong with it."""
    url: str
    width: int
    height: int
    mobile: bool
    title: str = ""
    console_errors: list[str] = dataclasses.field(default_factory=list)
    requests: list[str] = dataclasses.field(default_factory=list)  # not local: the report must make none
    file_requests: list[str] = dataclasses.field(default_factory=list)
    broken_images: list[str] = dataclasses.field(default_factory=list)
    overflowing_tables: list[str] = dataclasses.field(default_factory=list)
    page_width: int = 0  # the document's; wider than `width`, the page scrolls sideways
    viewport_meta: bool = True  # without one, a phone lays the page out 980 px wide and shrinks it
    screenshot: str | None = None

    @property
    def page_overflow(self) -> bool:
        """Whether the page scrolls sideways. Compared with `width`, not window.innerWidth: a phone
        widens its layout viewport to the content, so innerWidth hides the overflow there."""
        return self.page_width > self.width + 1

    def problems(self) -> list[str]:
        """Each problem as one readable line; empty when the page is fine."""
        where = f"{self.url} at {self.width}x{self.height}{' (phone)' if self.mobile else ''}"
        found = [f"console error: {error}" for error in self.console_errors]
        found += [f"network request (the report must load local files only): {url}" for url in self.requests]
        found += [f"broken image: {src}" for src in self.broken_images]
        found += [f"table {table}: put it in a container with overflow-x: auto" for table in self.overflowing_tables]
        if self.page_overflow:
            found.append(f"the page is {self.page_width} px wide in a {self.width} px viewport: it scrolls sideways")
        if self.mobile and not self.viewport_meta:
            found.append('no <meta name="viewport" content="width=device-width, initial-scale=1">: '
                         "a phone shows the page 980 px wide, shrunk")
        return [f"{where}: {line}" for line in found]


def _console_error(kind: str, params: dict) -> str | None:
    """The readable line of a console error, an uncaught exception or an error logged by the browser."""
    if kind == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
        text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"])
        frames = params.get("stackTrace", {}).get("callFrames", [])
        return text + (f" ({frames[0]['url']}:{frames[0]['lineNumber'] + 1})" if frames else "")
    if kind == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        text = details.get("exception", {}).get("description", details["text"]).splitlines()[0]
        return f"{text} ({details.get('url', '')}:{details['lineNumber'] + 1})"
    if kind == "Log.entryAdded" and params["entry"]["level"] == "error":
        entry = params["entry"]
        return entry["text"] + (f" ({entry['url']})" if entry.get("url") else "")
    return None


def _record_event(event: dict, report: PageReport) -> None:
    """Adds a console error or a request of the page's to `report`; other events are not checked."""
    if (error := _console_error(event.get("method", ""), event.get("params", {}))) is not None:
        report.console_errors.append(error)
    elif event.get("method") == "Network.requestWillBeSent":
        url = event["params"]["request"]["url"]
        scheme = urlsplit(url).scheme
        if scheme == "file":
            report.file_requests.append(url)
        elif scheme not in LOCAL_SCHEMES:
            report.requests.append(url)


class Browser:
    """One headless Chromium for many page checks; a context manager that closes it (and deletes
    its temporary profile) on exit. Every wait ends after `timeout_s` with an error naming it."""

    def __init__(self, executable: str | None = None, *, timeout_s: float = 60.0):
        executable = executable or find_chromium()
        if executable is None:
            raise BrowserError(f"no Chromium found ({', '.join(CHROMIUM_NAMES)} on PATH); install it with: {INSTALL_HINT}")
        self.timeout_s = timeout_s
        self._profile = tempfile.mkdtemp(prefix="rgpkd-chromium-")
        self._stderr = tempfile.TemporaryFile()
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()
        self._process: subprocess.Popen | None = None
        self._received = bytearray()
        self._inbox: list[dict] = []
        self._last_id = 0
        sandbox = ("--no-sandbox",) if os.geteuid() == 0 else ()  # Chromium's sandbox refuses root

        def pipes_at_3_and_4():  # in the child; both ends first move above 10 so neither overwrites the other
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
            for target, fd in zip((3, 4), high):
                os.dup2(fd, target)

        try:
            self._process = subprocess.Popen(
                [executable, *FLAGS, *sandbox, f"--user-data-dir={self._profile}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
                pass_fds=(3, 4), preexec_fn=pipes_at_3_and_4)
            os.close(to_browser)
            os.close(from_browser)
            version = self._command("Browser.getVersion", what="its version at start-up")
        except BaseException:
            for fd in (to_browser, from_browser):
                with contextlib.suppress(OSError):  # closed above when the start got that far
                    os.close(fd)
            self.close()
            raise
        logging.info("started %s (%s)", executable, version.get("product"))

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Asks Chromium to quit, kills it if it has not within 10 s (or `timeout_s`), deletes its
        profile. Closing twice does nothing."""
        if self._stderr.closed:
            return
        if self._process is not None and self._process.poll() is None:
            try:
                self._send({"id": 0, "method": "Browser.close"})
                self._process.wait(timeout=min(10.0, self.timeout_s))
            except (BrowserError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        os.close(self._commands)
        os.close(self._replies)
        self._stderr.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def check_page(self, path_or_url: str | os.PathLike, *, width: int, height: int,
                   screenshot: str | os.PathLike | None = None, mobile: bool = False) -> PageReport:
        """Opens the page in a new tab at a `width` x `height` viewport (`mobile`: as a phone does),
        waits for its load event and every image, measures it, and writes a full-page PNG to
        `screenshot` when given."""
        url = str(path_or_url)
        if not urlsplit(url).scheme:
            if not os.path.isfile(url):
                raise FileNotFoundError(f"no page to check at {url}")
            url = Path(url).resolve().as_uri()
        page = f"{url} at {width}x{height}"
        target = self._command("Target.createTarget", {"url": "about:blank"}, what=f"a new tab for {page}")["targetId"]
        session = None
        try:
            session = self._command("Target.attachToTarget", {"targetId": target, "flatten": True},
                                    what=f"the tab of {page}")["sessionId"]
            report = self._load_and_measure(url, page, session, width=width, height=height, mobile=mobile,
                                            screenshot=screenshot)
        finally:
            if self._process.poll() is None:  # else the error that ended it is the one to see
                self._command("Target.closeTarget", {"targetId": target}, what=f"closing the tab of {page}")
            events = [m for m in self._inbox if m.get("sessionId") == session]
            self._inbox = [m for m in self._inbox if m.get("sessionId") != session]
        for event in events:
            _record_event(event, report)
        return report

    def _load_and_measure(self, url: str, page: str, session: str, *, width: int, height: int, mobile: bool,
                          screenshot: str | os.PathLike | None) -> PageReport:
        def run(method: str, params: dict | None = None) -> dict:
            return self._command(method, params, session=session, what=f"the reply to {method} on {page}")

        def evaluate(expression: str):
            return run("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                            "returnByValue": True})["result"]["value"]

        run("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                   "mobile": mobile})
        for domain in ("Page", "Runtime", "Log", "Network"):
            run(f"{domain}.enable")
        error = run("Page.navigate", {"url": url}).get("errorText")
        if error:
            raise BrowserError(f"could not open {page}: {error}")
        self._wait(lambda m: m.get("sessionId") == session and m.get("method") == "Page.loadEventFired",
                   f"the load event of {page}")
        evaluate(IMAGES_SETTLED_JS)
        layout = evaluate(LAYOUT_JS)
        report = PageReport(url=url, width=width, height=height, mobile=mobile, title=layout["title"],
                            broken_images=layout["brokenImages"], page_width=layout["pageWidth"],
                            viewport_meta=layout["viewportMeta"],
                            overflowing_tables=[f"{t['name']} reaches {t['right']} px, past its room's "
                                                f"{t['room']} px" for t in layout["tables"]])
        if screenshot is not None:
            size = run("Page.getLayoutMetrics")["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
            png = run("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
            with files.atomic_write(screenshot, "wb") as f:
                f.write(base64.b64decode(png["data"]))
            report.screenshot = os.fspath(screenshot)
        return report

    def _command(self, method: str, params: dict | None = None, *, session: str | None = None, what: str) -> dict:
        """Sends one command and returns its result (events that arrive meanwhile stay in the inbox)."""
        self._last_id += 1
        message_id = self._last_id
        self._send({"id": message_id, "method": method, "params": params or {},
                    **({"sessionId": session} if session else {})})
        reply = self._wait(lambda m: m.get("id") == message_id, what)
        if "error" in reply:
            raise BrowserError(f"Chromium refused {method} ({reply['error'].get('message')}) waiting for {what}")
        return reply.get("result", {})

    def _send(self, message: dict) -> None:
        data = json.dumps(message).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self._commands, data):]
        except BrokenPipeError:
            raise BrowserError(f"Chromium has exited; it could not be sent {message['method']}{self._stderr_tail()}") from None

    def _wait(self, matches: Callable[[dict], bool], what: str) -> dict:
        """Removes and returns the first message (reply or event) that `matches`, reading more as needed."""
        deadline = time.monotonic() + self.timeout_s
        checked = 0
        while True:
            for index in range(checked, len(self._inbox)):
                if matches(self._inbox[index]):
                    return self._inbox.pop(index)
            checked = len(self._inbox)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._replies], [], [], remaining)[0]:
                raise BrowserError(f"Chromium did not send {what} within {self.timeout_s:g} s")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                self._process.wait(timeout=10)
                raise BrowserError(f"Chromium exited (code {self._process.returncode}) before sending "
                                   f"{what}{self._stderr_tail()}")
            self._received += chunk
            if b"\0" in chunk:  # a message ended: parse only then (a screenshot arrives in many chunks)
                *messages, rest = self._received.split(b"\0")
                self._received = bytearray(rest)
                self._inbox.extend(json.loads(m) for m in messages)

    def _stderr_tail(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0, os.SEEK_END)
        self._stderr.seek(max(0, self._stderr.tell() - STDERR_TAIL))
        return "; its stderr ends:\n" + self._stderr.read().decode(errors="replace")
