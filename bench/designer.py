"""Save-to-repaint in the designer's studio, and the server's memory over many saves.

    .venv/bin/python bench/designer.py            # 100 timed saves, then to 1,000 saves
    .venv/bin/python bench/designer.py --quick    # 20 timed saves, then to 100

Starts Kairos (uvicorn) on a copy of blocks/ and templates/, opens `/designer` in
headless Chromium (Debian's, through Selenium and chromedriver), picks the first
template and its first sample, then saves one block file of that template again and
again, each save a visible change, and times each from the write to the page's
`data-rendered-version` taking the version of the save. Prints p50 / p95 / max (target:
p95 <= 300 ms), then the server's resident memory after the timed saves and after all
the saves (target: within 10 %).

While the studio's page is not served yet (404 on /designer), a stand-in page of this
bench does what the studio's page does on the contract: it listens to
`/designer/events` and, on each change, asks `POST /v1/preview` and paints the HTML
into a frame, then sets `data-rendered-version`. It is loaded from a data: URL, so
Chromium runs with web security off for it (the bench's own browser profile). The
output says which page was measured.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from common import (
    ROOT,
    BenchError,
    Client,
    Processes,
    base_env,
    free_port,
    run_main,
    tail,
    uvicorn_argv,
    wait_ready,
)

SECRET_KEY = "bench-designer-secret-0123456789abcdefghij"
API_KEY = "bench-designer-api-key-0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PAINT_TIMEOUT_S = 10.0
POLL_S = 0.002
TARGET_P95_MS = 300.0
TARGET_GROWTH = 0.10
MARK = "Bench save"

STAND_IN = """<!doctype html><html><head><meta charset="utf-8"><title>stand-in</title></head>
<body><iframe id="frame-desktop" style="width:600px;height:900px"></iframe><script>
const base = __BASE__, key = __KEY__, template = __TEMPLATE__, sample = __SAMPLE__;
const frame = document.getElementById("frame-desktop");
let wanted = null, busy = false;
async function paint() {
  if (busy) return;
  busy = true;
  while (wanted !== null) {
    const version = wanted;
    wanted = null;
    const r = await fetch(base + "/v1/preview", {
      method: "POST",
      headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json"},
      body: JSON.stringify({template: template, sample: sample, formats: ["html"]}),
    });
    const doc = await r.json();
    if (r.ok) {
      await new Promise((done) => { frame.onload = done; frame.srcdoc = doc.html; });
    } else {
      document.documentElement.dataset.errorVersion = version;
    }
    document.documentElement.dataset.renderedVersion = version;
  }
  busy = false;
}
const events = new EventSource(base + "/designer/events");
for (const name of ["hello", "change"]) {
  events.addEventListener(name, (e) => { wanted = JSON.parse(e.data).version; paint(); });
}
</script></body></html>"""


def kairos_env(blocks: Path, templates: Path, tmp: Path) -> dict[str, str]:
    return {
        **base_env(),
        "KAIROS_ENV": "development",
        "KAIROS_SECRET_KEYS": SECRET_KEY,
        "KAIROS_API_KEYS": API_KEY,
        "KAIROS_DEMO_DATA": "true",
        "KAIROS_LOG_LEVEL": "WARNING",
        "KAIROS_RELOAD_TEMPLATES": "true",
        "KAIROS_BLOCKS_DIR": str(blocks),
        "KAIROS_TEMPLATES_DIR": str(templates),
        "KAIROS_SEGMENTS_FILE": str(templates / "segments.toml"),
        "KAIROS_DEV_SECRET_FILE": str(tmp / "dev-secret"),
    }


def rss_kb(pid: int) -> int:
    """The resident memory of process `pid` (VmRSS), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


def api(port: int, method: str, path: str, body: Any = None) -> Any:
    client = Client(port, timeout=30.0)
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    try:
        data = None if body is None else json.dumps(body).encode()
        answer = client.request(method, path, body=data, headers=headers)
    finally:
        client.close()
    if answer.status != 200:
        raise BenchError(f"{method} {path} answered {answer.status}: {answer.body[:300]!r}")
    return json.loads(answer.body)


def pick(port: int, blocks: Path, wanted: str | None) -> tuple[str, str, str, list[str]]:
    """The template (the first, or `wanted`), its first sample, the block to save and
    the templates using it: of the template's blocks that show for that sample (a
    preview of the saved change has it), the one the fewest templates use (a save
    recompiles those)."""
    listing = [t for t in api(port, "GET", "/v1/templates")["templates"] if t["ok"]]
    if not listing:
        raise BenchError("no template compiles")
    template = next((t for t in listing if t["name"] == wanted), None) if wanted else listing[0]
    if template is None or not template["samples"]:
        raise BenchError(f"template {wanted!r} is not served, or has no sample")
    name, sample = template["name"], template["samples"][0]
    users = {b: [t["name"] for t in listing if b in t["blocks"]] for b in template["blocks"]}
    for block in sorted(dict.fromkeys(template["blocks"]), key=lambda b: len(users[b])):
        edit = (blocks / block / "block.mjml").read_text(encoding="utf-8") + section(0)
        files = {f"blocks/{block}/block.mjml": edit}
        body = {"template": name, "sample": sample, "files": files, "formats": ["html"]}
        if f"{MARK} 0" in api(port, "POST", "/v1/preview", body)["html"]:
            return name, sample, block, users[block]
    raise BenchError(f"no block of {name} shows for sample {sample}")


def browser(profile: Path, *, stand_in: bool) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1400,1000")
    # The emails' images are on hosts this bench does not reach: their names fail at
    # once, rather than after a DNS timeout that would hold a frame's load (and a
    # repaint) for seconds now and then.
    options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    if stand_in:  # a data: page calling the server: only this bench's own profile
        options.add_argument("--disable-web-security")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def rendered(driver: Any) -> str:
    return str(
        driver.execute_script("return document.documentElement.dataset.renderedVersion || ''")
    )


def wait_repaint(driver: Any, before: str) -> tuple[str, float]:
    """Poll the page until its rendered version is no longer `before`: the new
    version and when it was seen."""
    deadline = time.monotonic() + PAINT_TIMEOUT_S
    while True:
        now = rendered(driver)
        if now and now != before:
            return now, time.perf_counter()
        if time.monotonic() > deadline:
            raise BenchError(f"the page did not repaint within {PAINT_TIMEOUT_S:.0f}s")
        time.sleep(POLL_S)


def studio_page(port: int) -> int | None:
    """None when the studio's page is served, else the status /designer answered."""
    client = Client(port)
    try:
        page = client.get("/designer")
    finally:
        client.close()
    return None if page.status == 200 and b'id="template"' in page.body else page.status


def open_page(driver: Any, port: int, template: str, sample: str, status: int | None) -> str:
    """Open the studio's page (`status` None) or the stand-in on `template` and
    `sample`; which."""
    if status is None:
        driver.get(f"http://127.0.0.1:{port}/designer")
        driver.execute_script(
            """const [template, sample] = arguments;
            for (const [id, value] of [["template", template], ["sample", sample]]) {
              const select = document.getElementById(id);
              if (select && select.value !== value) {
                select.value = value;
                select.dispatchEvent(new Event("change", {bubbles: true}));
              }
            }""",
            template,
            sample,
        )
        which = "the studio's page (/designer)"
    else:
        html = STAND_IN
        base = f"http://127.0.0.1:{port}"
        for name, value in (
            ("BASE", base),
            ("KEY", API_KEY),
            ("TEMPLATE", template),
            ("SAMPLE", sample),
        ):
            html = html.replace(f"__{name}__", json.dumps(value), 1)
        driver.get("data:text/html;charset=utf-8," + quote(html))
        which = f"the bench's stand-in page (/designer answered {status})"
    wait_repaint(driver, "")
    return which


def painted_text(driver: Any) -> str:
    return str(
        driver.execute_script(
            "const f = document.getElementById('frame-desktop');"
            "return f && f.contentDocument ? f.contentDocument.body.textContent : '';"
        )
    )


def section(n: int) -> str:
    return f"<mj-section><mj-column><mj-text>{MARK} {n}</mj-text></mj-column></mj-section>\n"


def save(path: Path, original: str, n: int) -> None:
    path.write_text(original + section(n), encoding="utf-8")


def bench(args: argparse.Namespace) -> int:
    timed = 20 if args.quick else args.saves
    total = 100 if args.quick else args.total
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not Path(binary).exists():
            raise BenchError(f"{binary} is missing (apt-get install chromium chromium-driver)")
    procs = Processes()
    driver = None
    try:
        with tempfile.TemporaryDirectory(prefix="kairos-bench-designer-") as tmp_name:
            tmp = Path(tmp_name)
            blocks, templates = tmp / "blocks", tmp / "templates"
            shutil.copytree(ROOT / "blocks", blocks)
            shutil.copytree(ROOT / "templates", templates)
            port = free_port()
            log = tmp / "server.log"
            argv = [*uvicorn_argv("app.app:factory", factory=True), "--port", str(port)]
            argv += ["--timeout-graceful-shutdown", "3"]
            server = procs.start("kairos", argv, env=kairos_env(blocks, templates, tmp), log=log)
            wait_ready("kairos", server, port, "/readyz", log)
            template, sample, block, users = pick(port, blocks, args.template)
            path = blocks / block / "block.mjml"
            original = path.read_text(encoding="utf-8")
            status = studio_page(port)
            driver = browser(tmp / "chromium", stand_in=status is not None)
            which = open_page(driver, port, template, sample, status)
            print(f"page: {which}", flush=True)
            print(f"template {template}, sample {sample}; saving blocks/{block}/block.mjml "
                  f"(used by {', '.join(users)})", flush=True)  # fmt: skip
            times: list[float] = []
            memory: dict[int, int] = {}
            for n in range(1, total + 1):
                before = rendered(driver)
                started = time.perf_counter()
                save(path, original, n)
                _, seen = wait_repaint(driver, before)
                if n <= timed:
                    times.append((seen - started) * 1000)
                if server.poll() is not None:
                    raise BenchError(f"the server died:\n{tail(log)}")
                if n in (timed, total):
                    memory[n] = rss_kb(server.pid)
                if n % 100 == 0:
                    print(f"  {n} saves", flush=True)
            if f"{MARK} {total}" not in painted_text(driver):
                raise BenchError("the last save is not what the page shows")
            report(times, memory, timed, total)
            return 0
    finally:
        if driver is not None:
            driver.quit()
        procs.stop_all()


def report(times: list[float], memory: dict[int, int], timed: int, total: int) -> None:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)]
    verdict = "ok" if p95 <= TARGET_P95_MS else "OVER TARGET"
    print(f"\nsave-to-repaint over {timed} saves: p50 {statistics.median(ordered):.0f} ms, "
          f"p95 {p95:.0f} ms, max {ordered[-1]:.0f} ms "
          f"(target p95 <= {TARGET_P95_MS:.0f} ms: {verdict})")  # fmt: skip
    first, last = memory[timed], memory[total]
    growth = last / first - 1
    verdict = "ok" if growth <= TARGET_GROWTH else "OVER TARGET"
    print(f"server RSS after {timed} saves {first / 1024:.1f} MiB, after {total} "
          f"{last / 1024:.1f} MiB: {growth:+.1%} (target within {TARGET_GROWTH:.0%}: {verdict})",
          flush=True)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Save-to-repaint in the designer's studio.")
    parser.add_argument("--saves", type=int, default=100, help="timed saves (default 100)")
    parser.add_argument("--total", type=int, default=1000,
                        help="saves in all, for the memory figure (default 1000)")  # fmt: skip
    parser.add_argument("--template", default=None, help="template shown (default: the first)")
    parser.add_argument("--quick", action="store_true", help="20 timed saves, 100 in all")
    args = parser.parse_args(argv)
    if not 1 <= args.saves <= args.total:
        parser.error("1 <= --saves <= --total")
    return run_main(bench, args)


if __name__ == "__main__":
    sys.exit(main())
