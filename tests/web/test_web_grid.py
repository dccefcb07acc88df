"""The web grid in a real browser: starts a real redis-server and duckgrid
(the API tests' fixtures, tests/api/conftest.py), then runs
tests/web/sse.test.mjs (the SSE parser alone) and tests/web/grid.test.mjs (node's test runner, puppeteer-core driving Debian's
chromium) against them. The node output, with its measured figures, is
printed; any failing browser check fails this test.

DG_WEB_SCREENSHOT=docs/web-grid.png saves the README's screenshot.
"""
import importlib.util
import os
import shutil
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
_spec = importlib.util.spec_from_file_location("dg_api_fixtures",
                                               os.path.join(ROOT, "tests", "api", "conftest.py"))
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)

CHROMIUM = os.environ.get("DG_CHROMIUM", "/usr/bin/chromium")
NODE_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def stack():
    r = fx.Redis().start()
    # The 100,100-row table goes in as one insert of ~7 MB.
    s = fx.Server(r.url, env={"DUCKGRID_BODY_LIMIT": str(32 << 20),
                                "DUCKGRID_SYNC_TIMEOUT_MS": "120000"}).start()
    yield s
    s.cleanup()
    r.cleanup()


def test_web_grid_in_chromium(stack):
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing (scripts/deps.sh installs chromium)"
    assert shutil.which("node"), "node is missing (scripts/deps.sh installs it)"
    env = dict(os.environ, DG_BASE=stack.base, DG_ADMIN_KEY=stack.admin_key, DG_CHROMIUM=CHROMIUM)
    shot = os.environ.get("DG_WEB_SCREENSHOT")
    if shot:
        env["DG_WEB_SCREENSHOT"] = os.path.abspath(shot)
    out = subprocess.run(["node", "--test", "--test-reporter=spec", "tests/web/sse.test.mjs",
                          "tests/web/grid.test.mjs"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=NODE_TIMEOUT_S)
    print(out.stdout[-20000:])
    print(out.stderr[-5000:])
    assert out.returncode == 0, ("browser tests failed:\n" + out.stdout[-20000:] + out.stderr[-5000:]
                                 + "\n" + stack.logs()[-5000:])
