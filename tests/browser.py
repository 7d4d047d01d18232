"""Headless Chromium (Debian's `chromium` package) for the tests that look at what a person sees.

`measure(svg_text)` loads an SVG inline in a page, lets the browser lay it out with its real fonts,
and returns what a script in that page read back: each text's rendered box, each line's ends, each
bar segment's box, the picture's own box. Nothing leaves 127.0.0.1: the page is a local file and the
flags turn off Chromium's background connections. `make browser-deps` installs the package."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")

# Runs in the page once the inline SVG is parsed; writes one JSON document into <pre id="out">.
MEASURE = """
const svg = document.querySelector('svg');
const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
const out = {
  root: box(svg),
  texts: [...svg.querySelectorAll('text')].map(t => ({
    text: t.textContent, cls: t.getAttribute('class'), box: box(t),
    size: parseFloat(getComputedStyle(t).fontSize), family: getComputedStyle(t).fontFamily})),
  lines: [...svg.querySelectorAll('line')].map(l => ({cls: l.getAttribute('class'), label: l.dataset.label || null,
    box: box(l)})),
  segments: [...svg.querySelectorAll('rect.segment')].map(r => ({device: r.parentNode.dataset.device,
    rto: parseFloat(r.parentNode.dataset.rto), part: r.dataset.part, seconds: parseFloat(r.dataset.seconds),
    box: box(r)})),
  polylines: [...svg.querySelectorAll('polyline.region')].map(p => ({region: p.dataset.region, box: box(p)})),
};
document.getElementById('out').textContent = JSON.stringify(out);
"""


def executable() -> str | None:
    """Chromium's path, or None when it is not installed here."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)


def _run(args: list[str], timeout: float = 90.0) -> str:
    chromium = executable()
    if chromium is None:
        raise RuntimeError("Chromium is not installed: `make browser-deps` (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        proc = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    return proc.stdout


def measure(svg_text: str, width: int = 1000) -> dict[str, Any]:
    """What the browser laid out for `svg_text` (see MEASURE), in CSS pixels of the page."""
    page = ("<!doctype html><html><head><meta charset='utf-8'><style>body{margin:0}</style></head><body>"
            f"{svg_text}<pre id='out'></pre><script>{MEASURE}</script></body></html>")
    with tempfile.TemporaryDirectory(prefix="picture-") as tmp:
        path = Path(tmp) / "page.html"
        path.write_text(page, encoding="utf-8")
        dom = _run(["--dump-dom", f"--window-size={width},1200", path.as_uri()])
    found = re.search(r"<pre id=\"out\">(.*?)</pre>", dom, re.S)
    if found is None or not found.group(1):
        raise RuntimeError("the page's measuring script wrote nothing")
    return json.loads(html.unescape(found.group(1)))


def screenshot(svg_path: Path, png: Path, width: int, height: int) -> None:
    """A PNG of `svg_path` as Chromium draws it (for a person to look at)."""
    _run([f"--screenshot={png}", f"--window-size={width},{height}", svg_path.resolve().as_uri()])
