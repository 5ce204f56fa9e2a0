"""The official AMP validator (AMP4EMAIL format), run offline through Node.

It is installed by `.ci/amp-validator` (the validator engine from a pinned npm tarball,
checked by sha256, plus the `amphtml-validator` runner) into the folder given here: the
`amp_validator_dir` setting (KAIROS_AMP_VALIDATOR_DIR).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

RUNNER = """
const v = require(process.argv[2]); const fs = require('fs');
v.getInstance(process.argv[3]).then(inst => {
  const out = [];
  for (const f of process.argv.slice(4)) {
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


def available(folder: Path) -> bool:
    """Whether node and the validator installed in `folder` are there."""
    return (
        shutil.which("node") is not None
        and (folder / "validator_wasm.js").is_file()
        and (folder / "node_modules" / "amphtml-validator").is_dir()
    )


def validate(documents: dict[str, str], folder: Path) -> dict[str, Verdict]:
    """The validator's verdict on each named AMP document, by the validator in `folder`."""
    package = folder / "node_modules" / "amphtml-validator"
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for i, (name, text) in enumerate(documents.items()):
            path = Path(tmp) / f"{i}.html"
            path.write_text(text, encoding="utf-8")
            paths[str(path)] = name
        runner = Path(tmp) / "run.js"
        runner.write_text(RUNNER)
        # The runner is required by its path (its own dependencies are found beside it),
        # so node needs no NODE_PATH and inherits this process's environment untouched.
        result = subprocess.run(
            ["node", str(runner), str(package), str(folder / "validator_wasm.js"), *paths],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"the AMP validator failed: {result.stderr.strip()[:500]}")
    return {
        paths[item["file"]]: Verdict(item["status"], item["errors"])
        for item in json.loads(result.stdout)
    }
