"""Compare Kairos's HTML (MRML + css-inline) with Node mjml's for every template.

Kairos compiles MJML with MRML (Rust) and inlines `mj-style inline` CSS itself, because
MRML does not. This checks, once per change of the block library, that nothing is lost
against the reference compiler: the same Jinja placeholders, the same visible text, the
same links and images, and every theme CSS declaration inlined as often.

    .venv/bin/python bench/mjml_parity.py          # installs mjml@4 with npm if needed

Exit 1 when a template differs in placeholders, text, links or images.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.render.compiler import mjml_document, mrml_html  # noqa: E402
from app.render.sources import load_blocks, load_template  # noqa: E402

NODE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kairos-mjml4"
NODE_SCRIPT = """
const mjml = require('mjml'); const fs = require('fs');
const src = fs.readFileSync(process.argv[1], 'utf8');
const out = mjml(src, {validationLevel: 'soft', keepComments: true});
process.stdout.write(out.html);
"""


class Digest(HTMLParser):
    """What a reader gets from an HTML email: text, links, images, placeholders."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.links: list[str] = []
        self.images: list[str] = []
        self.styles: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("style", "title", "script"):
            self._skip += 1
        if tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")
        if tag == "img" and a.get("src"):
            self.images.append(a["src"] or "")
        if a.get("style"):
            self.styles.append(a["style"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title", "script") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.extend(data.split())


def node_mjml(document: str) -> str:
    if not (NODE_DIR / "node_modules" / "mjml").is_dir():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "init", "-y"], cwd=NODE_DIR, capture_output=True, check=True)
        subprocess.run(
            ["npm", "install", "-s", "--no-audit", "--no-fund", "mjml@4"],
            cwd=NODE_DIR,
            check=True,
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "doc.mjml"
        path.write_text(document, encoding="utf-8")
        result = subprocess.run(
            ["node", "-e", NODE_SCRIPT, str(path)],
            capture_output=True,
            text=True,
            env={**os.environ, "NODE_PATH": str(NODE_DIR / "node_modules")},
            check=True,
        )
    return result.stdout


def declarations(css: str) -> list[str]:
    """The `property:value` pairs of the theme's plain rules (not @media)."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)
    css = re.sub(r"@media[^{]*\{(?:[^{}]*\{[^}]*\})*\s*\}", "", css)
    found = []
    for body in re.findall(r"\{([^}]*)\}", css):
        for decl in body.split(";"):
            if ":" in decl:
                prop, value = decl.split(":", 1)
                found.append(f"{prop.strip()}:{' '.join(value.split())}")
    return sorted(set(found))


def style_counts(styles: list[str], wanted: list[str]) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for style in styles:
        normal = {
            f"{p.strip()}:{' '.join(v.split())}"
            for p, _, v in (d.partition(":") for d in style.split(";"))
            if v
        }
        for decl in wanted:
            if decl in normal:
                counts[decl] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=Path, default=ROOT / "blocks")
    parser.add_argument("--templates", type=Path, default=ROOT / "templates")
    args = parser.parse_args()
    blocks, broken = load_blocks(args.blocks)
    theme_css = (
        (args.templates / "theme.css").read_text()
        if (args.templates / "theme.css").is_file()
        else ""
    )
    wanted = declarations(theme_css)
    failures = 0
    for folder in sorted(p for p in args.templates.iterdir() if (p / "template.json").is_file()):
        source = load_template(folder, blocks, broken)
        used = tuple(blocks[u.block] for u in source.blocks)
        ours_doc, tags, _ = mjml_document(source, used, theme_css)
        ref_doc, _, _ = mjml_document(source, used, theme_css, inline_style=True)
        ours, ref = Digest(), Digest()
        ours.feed(mrml_html(ours_doc, theme_css, folder))
        ref.feed(node_mjml(ref_doc))
        checks = {
            "placeholders": (
                sorted(re.findall(r"kj[xs]\d+x", " ".join(ours.text + ours.links + ours.images))),
                sorted(re.findall(r"kj[xs]\d+x", " ".join(ref.text + ref.links + ref.images))),
            ),
            "text": (ours.text, ref.text),
            "links": (sorted(ours.links), sorted(ref.links)),
            "images": (sorted(ours.images), sorted(ref.images)),
        }
        print(
            f"{folder.name}: {len(ours.text)} words, {len(ours.links)} links, "
            f"{len(ours.images)} images, {len(tags)} Jinja tags"
        )
        for name, (a, b) in checks.items():
            same = a == b
            failures += not same
            print(f"  {name:13} {'same' if same else 'DIFFERENT'}")
            if not same:
                print(
                    "    kairos only:",
                    sorted((collections.Counter(a) - collections.Counter(b)).elements())[:10],
                )
                print(
                    "    node only:  ",
                    sorted((collections.Counter(b) - collections.Counter(a)).elements())[:10],
                )
        ours_styles = style_counts(ours.styles, wanted)
        ref_styles = style_counts(ref.styles, wanted)
        missing = {
            d: (ours_styles[d], ref_styles[d]) for d in wanted if ours_styles[d] < ref_styles[d]
        }
        print(
            f"  inlined CSS   {len(wanted)} theme declarations; "
            + (
                "each inlined at least as often as Node mjml"
                if not missing
                else f"fewer than Node mjml: {json.dumps(missing)[:300]}"
            )
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
