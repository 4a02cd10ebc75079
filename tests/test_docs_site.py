"""The documentation site: mkdocs builds it in strict mode; a real browser renders it."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def site() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "site"
        result = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        yield out


def test_strict_build_renders_every_page(site: Path) -> None:
    for page in ["index.html", "tasks/index.html", "api/hlg/index.html", "api/layers/index.html"]:
        assert (site / page).is_file(), page
    api = (site / "api" / "hlg" / "index.html").read_text()
    # The reference comes from the docstrings: a public class and its runnable example.
    assert 'id="hlg.HighLevelGraph"' in api
    assert "language-pycon" in api or "highlight" in api
    assert 'id="hlg.__all__"' not in api


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium installed (apt-get install chromium): browser check skipped")


@pytest.mark.parametrize(("path", "text"), [("/", "Why hlg"), ("/api/hlg/", "HighLevelGraph")])
def test_pages_render_in_a_browser(served: str, path: str, text: str, tmp_path: Path) -> None:
    browser = _browser()
    common = [browser, *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [*common, "--dump-dom", served + path], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert text in dom.stdout
    shot = tmp_path / "page.png"
    result = subprocess.run(
        [*common, "--window-size=1280,900", f"--screenshot={shot}", served + path],
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000  # a rendered page, not a blank one
