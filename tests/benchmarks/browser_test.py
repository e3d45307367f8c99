"""The HTML report's page checker (benchmarks/report/browser.py) on small pages written here: a good
page passes at desktop and phone widths, and each kind of problem in a bad page is reported, so the
report's own tests can trust both its silence and its complaints."""

from __future__ import annotations

import os
import struct
import zlib

import pytest

from benchmarks.report import browser

DESKTOP = {"width": 1280, "height": 800, "mobile": False}
PHONE = {"width": 390, "height": 844, "mobile": True}
VIEWPORT_META = '<meta name="viewport" content="width=device-width, initial-scale=1">'
# 900 px wide whatever the viewport: too wide for a phone unless its container scrolls sideways.
WIDE_TABLE = '<table><tr><th>Metric</th><td style="min-width: 900px">value</td></tr></table>'
GOOD_PAGE = f"""<!doctype html><html><head><meta charset="utf-8">{VIEWPORT_META}<title>Good</title></head>
<body><h1>Report</h1><img src="figure.png" alt="figure"><div style="overflow-x: auto">{WIDE_TABLE}</div></body></html>"""
BAD_PAGE = f"""<!doctype html><html><head><meta charset="utf-8">{VIEWPORT_META}<title>Bad</title></head>
<body><script>console.error("x"); throw new Error("boom");</script>
<img src="missing.png"><img src="http://example.invalid/a.png">{WIDE_TABLE}</body></html>"""


def _write_png(path, width: int, height: int) -> None:
    """A valid RGB PNG of one colour (the format's chunks written by hand: no imaging package)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\0" + b"\xc8\x32\x32" * width for _ in range(height))  # filter byte 0, then pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def _png_size(path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (big-endian, bytes 16-24)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def chrome(chromium):
    with browser.Browser(chromium) as opened:
        yield opened


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_good_page_has_no_problems_and_a_full_page_screenshot(chrome, viewport, tmp_path):
    (tmp_path / "index.html").write_text(GOOD_PAGE)
    _write_png(tmp_path / "figure.png", 40, 30)
    shot = tmp_path / "shot.png"
    report = chrome.check_page(tmp_path / "index.html", screenshot=str(shot), **viewport)
    assert report.problems() == []
    assert report.title == "Good" and (tmp_path / "figure.png").as_uri() in report.file_requests
    width, height = _png_size(shot)
    assert width == viewport["width"] and height >= viewport["height"]
    assert sorted(os.listdir(tmp_path)) == ["figure.png", "index.html", "shot.png"]  # no temporary left


def test_a_bad_page_reports_each_problem(chrome, tmp_path):
    (tmp_path / "index.html").write_text(BAD_PAGE)
    report = chrome.check_page(tmp_path / "index.html", **PHONE)
    errors = report.console_errors
    assert any(e.startswith("x (file://") for e in errors), errors
    assert any(e.startswith("Error: boom (file://") for e in errors), errors
    assert any("ERR_FILE_NOT_FOUND" in e and e.endswith("missing.png)") for e in errors), errors
    assert report.requests == ["http://example.invalid/a.png"]  # reported though it failed
    assert report.broken_images == ["missing.png", "http://example.invalid/a.png"]
    assert len(report.overflowing_tables) == 1 and report.overflowing_tables[0].startswith('"Metric" reaches 9')
    assert report.page_overflow and report.page_width > PHONE["width"]
    problems = report.problems()
    for kind, count in [("console error: ", len(errors)), ("network request", 1), ("broken image: ", 2),
                        ('table "Metric"', 1), ("the page is ", 1)]:
        assert sum(f"(phone): {kind}" in line for line in problems) == count, (kind, problems)
    assert len(problems) == len(errors) + 5


def test_the_table_that_breaks_a_phone_fits_a_desktop(chrome, tmp_path):
    (tmp_path / "index.html").write_text(BAD_PAGE)
    report = chrome.check_page(tmp_path / "index.html", **DESKTOP)
    assert report.overflowing_tables == [] and not report.page_overflow
    assert report.broken_images  # the same page, still broken otherwise


def test_a_page_without_a_viewport_meta_is_a_problem_on_a_phone_only(chrome, tmp_path):
    (tmp_path / "index.html").write_text(GOOD_PAGE.replace(VIEWPORT_META, ""))
    _write_png(tmp_path / "figure.png", 40, 30)
    assert chrome.check_page(tmp_path / "index.html", **DESKTOP).problems() == []
    problems = chrome.check_page(tmp_path / "index.html", **PHONE).problems()
    assert any('no <meta name="viewport"' in line for line in problems), problems


def test_a_missing_page_is_an_error_naming_it(chrome, tmp_path):
    with pytest.raises(FileNotFoundError, match="no page to check at .*absent.html"):
        chrome.check_page(tmp_path / "absent.html", **DESKTOP)


def _fake_browser(tmp_path, script: str) -> str:
    path = tmp_path / "fake-chromium"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return str(path)


def test_a_browser_that_exits_at_start_up_is_an_error_with_its_stderr(tmp_path):
    fake = _fake_browser(tmp_path, 'echo "cannot open display" >&2; exit 3')
    with pytest.raises(browser.BrowserError, match="(?s)Chromium.*exited.*stderr ends:\ncannot open display"):
        browser.Browser(fake)


def test_a_browser_that_never_answers_is_an_error_after_the_timeout(tmp_path):
    fake = _fake_browser(tmp_path, "exec sleep 60")
    with pytest.raises(browser.BrowserError, match="did not send its version at start-up within 0.5 s"):
        browser.Browser(fake, timeout_s=0.5)


def test_find_chromium_takes_the_variable_then_path(tmp_path, monkeypatch):
    fake = _fake_browser(tmp_path, "exit 0")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(browser.CHROMIUM_ENV, raising=False)
    assert browser.find_chromium() is None
    os.rename(fake, tmp_path / "chromium-browser")
    assert browser.find_chromium() == str(tmp_path / "chromium-browser")
    monkeypatch.setenv(browser.CHROMIUM_ENV, fake)
    with pytest.raises(browser.BrowserError, match=f"{browser.CHROMIUM_ENV}=.*fake-chromium is not an executable"):
        browser.find_chromium()
