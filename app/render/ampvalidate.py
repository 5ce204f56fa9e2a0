"""The official AMP validator (AMP4EMAIL format), run offline through Node.

It is installed by `.ci/amp-validator` (the validator engine from a pinned npm tarball,
checked by sha256, plus the `amphtml-validator` runner) into `KAIROS_AMP_VALIDATOR_DIR`,
default `~/.cache/kairos-ampval`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

RUNNER = """
const v = require('amphtml-validator'); const fs = require('fs');
v.getInstance(process.argv[2]).then(inst => {
  const out = [];
  for (const f of process.argv.slice(3)) {
    const r = inst.validateString(fs.readFileSync(f, 'utf8'), 'AMP4EMAIL');
    out.push({file: f, status: r.status, errors: r.errors.map(e =>
      `${e.severity} line ${e.line}:${e.col} ${e.code} ${e.message || ''}`)});
  }
  console.log(JSON.stringify(out));
}, e => { console.error(String(e)); process.exit(2); });
"""


@dataclass(frozen=True)
class Verdict:
    status: str
    errors: list[str]


def validator_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kairos-ampval"
    return Path(os.environ.get("KAIROS_AMP_VALIDATOR_DIR") or default)


def available() -> bool:
    folder = validator_dir()
    return (
        shutil.which("node") is not None
        and (folder / "validator_wasm.js").is_file()
        and (folder / "node_modules" / "amphtml-validator").is_dir()
    )


def validate(documents: dict[str, str]) -> dict[str, Verdict]:
    """The validator's verdict on each named AMP document."""
    folder = validator_dir()
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for i, (name, text) in enumerate(documents.items()):
            path = Path(tmp) / f"{i}.html"
            path.write_text(text, encoding="utf-8")
            paths[str(path)] = name
        runner = Path(tmp) / "run.js"
        runner.write_text(RUNNER)
        result = subprocess.run(
            ["node", str(runner), str(folder / "validator_wasm.js"), *paths],
            capture_output=True,
            text=True,
            env={**os.environ, "NODE_PATH": str(folder / "node_modules")},
            timeout=120,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"the AMP validator failed: {result.stderr.strip()[:500]}")
    return {
        paths[item["file"]]: Verdict(item["status"], item["errors"])
        for item in json.loads(result.stdout)
    }
