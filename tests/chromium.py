"""Screenshots of an email in headless Chromium, driven by its command line (no browser
automation package): one process per shot, a window taller than the email, cropped with
Pillow where a bar of a colour no email uses, put after the email, starts.
`bash .ci/test` installs Debian's `chromium`; without it the review fails and says so
(it never skips)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from app.settings import PROJECT_ROOT

BINARIES = ("chromium", "chromium-browser", "google-chrome")
FIRST_HEIGHT = 4500  # taller than the templates' emails at 375 px today
MAX_HEIGHT = 24000
# The colour of a bar put after the email: where it starts, the screenshot ends.
END = (255, 0, 254)
END_HEX = "#ff00fe"
TIMEOUT_S = 60.0


def artifacts_dir() -> Path:
    """Where the review writes its screenshots and renders: `KAIROS_REVIEW_DIR`, else
    `build/review/` of the checkout (ignored by git)."""
    configured = os.environ.get("KAIROS_REVIEW_DIR")
    return Path(configured) if configured else PROJECT_ROOT / "build" / "review"


def chromium() -> str:
    """The Chromium binary, or an AssertionError saying how to install it."""
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(
        "headless Chromium is needed for the email review's screenshots: "
        "`bash .ci/test` installs it (apt-get install chromium)"
    )


@dataclass(frozen=True)
class Shot:
    """One screenshot: an HTML file at a window width, with images or without."""

    page: Path
    png: Path
    width: int
    images: bool


def _run(binary: str, shot: Shot, height: int) -> None:
    with tempfile.TemporaryDirectory(prefix="kairos-chromium-") as profile:
        command = [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--mute-audio",
            f"--user-data-dir={profile}",  # each its own: shots run side by side
            # Nothing leaves the machine: remote images and fonts fail at once.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--window-size={shot.width},{height}",
            f"--screenshot={shot.png}",
        ]
        if not shot.images:
            command.append("--blink-settings=imagesEnabled=false")
        command.append(shot.page.resolve().as_uri())
        # Its own process group, so a hung browser is ended with all its helpers.
        proc = subprocess.Popen(  # noqa: S603
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AssertionError(f"chromium took over {TIMEOUT_S} s on {shot.page.name}") from None
        if proc.returncode != 0 or not shot.png.is_file():
            tail = err.decode(errors="replace")[-600:]
            raise AssertionError(f"chromium failed on {shot.page.name} ({proc.returncode}): {tail}")


def marked(page: str) -> str:
    """The page with a bar of the end colour after the email, where its end is read."""
    bar = f'<div style="height:8px;margin:0;background-color:{END_HEX}"></div>'
    at = page.lower().rfind("</body>")
    return page + bar if at < 0 else page[:at] + bar + page[at:]


def trim(png: Path) -> int | None:
    """Crop the screenshot where the end bar starts; the new height, or None when the
    bar is not in the window (the email did not fit)."""
    with Image.open(png) as image:
        rgb = image.convert("RGB")
    middle = rgb.crop((rgb.width // 2, 0, rgb.width // 2 + 1, rgb.height)).tobytes()
    end = bytes(END)
    rows = [i for i in range(rgb.height) if middle[3 * i : 3 * i + 3] == end]
    if not rows:
        return None
    rgb.crop((0, 0, rgb.width, rows[0])).save(png, "PNG")
    return rows[0]


def screenshot(binary: str, shot: Shot) -> Path:
    """The whole email in one PNG of `shot.width` pixels: a window taller than the email
    (doubled until it is), trimmed to it."""
    shot.png.parent.mkdir(parents=True, exist_ok=True)
    # Beside the page, so that its relative image paths hold; one per shot, as the four
    # shots of a page run side by side.
    page = shot.page.with_name(f".{shot.png.stem}.html")
    page.write_text(marked(shot.page.read_text(encoding="utf-8")), encoding="utf-8")
    try:
        height = FIRST_HEIGHT
        while True:
            _run(binary, Shot(page, shot.png, shot.width, shot.images), height)
            if trim(shot.png) is not None:
                return shot.png
            if height >= MAX_HEIGHT:
                raise AssertionError(f"{shot.page.name} is taller than {MAX_HEIGHT} px")
            height *= 2
    finally:
        page.unlink(missing_ok=True)


def screenshots(shots: Iterable[Shot], workers: int = 2) -> list[Path]:
    """Every shot, `workers` browsers at a time (each takes about a second of CPU)."""
    binary = chromium()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda shot: screenshot(binary, shot), shots))
