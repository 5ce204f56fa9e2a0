"""`kairos check`: compile every block and template, render each template for each of
its sample profiles and for a reader with no profile, and validate the output (and that
it is the same, byte for byte, as rendering every piece per reader)."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import itertools
import re
from collections.abc import Mapping

from jinja2.sandbox import SandboxedEnvironment

from app.demo import load_demo
from app.errors import KairosError
from app.profiles.schema import inline_profile
from app.render import ampvalidate, lint
from app.render.amp import MAX_DOCUMENT_BYTES
from app.render.jinja import check_part
from app.render.sources import Block, Part, SourceError, load_blocks
from app.render.variants import assign
from app.services import build_services
from app.settings import Settings

LEFTOVERS = re.compile(r"\{\{|\{%|\{#|kj[xs]\d+x|<mj-|</mj-")
CHECK_URL = "https://kairos.check.invalid"
# What an ESP's unsubscribe merge tag stands for once the ESP has replaced it.
ESP_UNSUBSCRIBE = "https://esp.check.invalid/unsubscribe"


def check_all(settings: Settings, *, amp: bool = True) -> list[str]:
    """Every problem found, as `file:line: message` or `template/sample: message`."""
    return asyncio.run(_check(settings, amp))


async def _check(settings: Settings, amp: bool) -> list[str]:
    if not settings.public_url.startswith("https://"):
        # AMP needs https URLs; the check renders as a production server would.
        settings = dataclasses.replace(settings, public_url=CHECK_URL)
    settings = dataclasses.replace(settings, redis_url=None, reload_templates=False)
    problems: list[str] = []
    services = build_services(settings)
    renderer = services.renderer
    await load_demo(services.stores)
    try:
        blocks, _ = load_blocks(settings.blocks_dir)
    except SourceError as exc:
        return [str(exc)]
    envs = renderer.templates.environments
    for block in blocks.values():
        for part in (block.mjml, block.fallback_mjml, block.amp, block.fallback_amp):
            if part is not None:
                _collect(problems, envs.html, part)
        for part in (block.text, block.fallback_text):
            if part is not None:
                _collect(problems, envs.text, part)
    problems.extend(_craft_problems(settings, blocks, envs.html))
    errors = renderer.templates.current.errors  # compiled by build_services
    problems.extend(str(e) for e in errors if str(e) not in problems)
    reference = renderer.reference()

    amp_docs: dict[str, str] = {}
    undrawable: set[tuple[str, str, str, str]] = set()
    for name in renderer.names():
        try:
            samples: dict[str, object] = dict(renderer.samples(name))
        except (KairosError, SourceError):
            continue
        samples["(no profile)"] = None
        problems.extend(lint.template_fallback_problems(renderer.compiled(name).source, envs.text))
        readers = _one_reader_per_variant(renderer.compiled(name).source.variants)
        for (sample, doc), (variant, reader) in itertools.product(samples.items(), readers):
            where = f"{settings.templates_dir / name}/{sample} (variant {variant})"
            try:
                profile = None if doc is None else inline_profile(doc)
                result = await renderer.render(name, reader, profile=profile, campaign="check")
                plain = await reference.render(name, reader, profile=profile, campaign="check")
            except KairosError as exc:
                problems.append(f"{where}: {exc.message}")
                continue
            except Exception as exc:  # report, never crash the check
                problems.append(f"{where}: {type(exc).__name__}: {exc}")
                continue
            difference = result.difference(plain)
            if difference is not None:
                # Parts rendered once per send must be what per-reader Jinja gives.
                problems.append(
                    f"{where}: the shared render differs from the per-reader reference in "
                    f"{difference} (a Kairos bug: please report it with this template)"
                )
            for names, image, param, glyphs in result.undrawable:
                if (names, image, param, glyphs) in undrawable:
                    continue  # once, not once per sample and variant
                undrawable.add((names, image, param, glyphs))
                problems.append(
                    f"{_image_line(blocks, names, image)}: block {names}, live image {image}, "
                    f"parameter {param}: no font can draw {glyphs!r} (in {where})"
                )
            for fmt in ("html", "text"):
                output = getattr(result, fmt) or ""
                leftover = LEFTOVERS.search(output)
                if leftover:
                    problems.append(f"{where}: {fmt} holds template syntax {leftover.group()!r}")
            if result.amp is None:
                problems.append(f"{where}: no AMP part ({'; '.join(result.warnings)})")
                continue
            if len(result.amp.encode()) > MAX_DOCUMENT_BYTES:
                problems.append(f"{where}: AMP document is over {MAX_DOCUMENT_BYTES} bytes")
            amp_docs[where] = _as_sent(result.amp, renderer.compiled(name).source.links)
    if amp and amp_docs:
        if not ampvalidate.available(settings.amp_validator_dir):
            problems.append(
                "the AMP validator is not installed: run `bash .ci/amp-validator`, or pass --no-amp"
            )
        else:
            verdicts = ampvalidate.validate(amp_docs, settings.amp_validator_dir)
            for where, verdict in verdicts.items():
                if verdict.status != "PASS":
                    problems.append(f"{where}: AMP {verdict.status}: " + "; ".join(verdict.errors))
    await services.stores.close()
    return problems


def _as_sent(amp: str, links: Mapping[str, str]) -> str:
    """The AMP part as the ESP sends it: a template's unsubscribe merge tag replaced by a
    URL (the validator refuses the tag itself, which no reader ever receives)."""
    tag = links.get("unsubscribe")
    if not tag or tag.startswith(("http://", "https://")):
        return amp
    return amp.replace(html.escape(tag), ESP_UNSUBSCRIBE)


def _image_line(blocks: dict[str, Block], names: str, image: str) -> str:
    """Where block `names` asks for live image `image`: `file:line` of the first call,
    else the block's folder."""
    block = blocks.get(names.split(", ")[0])
    if block is None:
        return f"block {names}"
    call = re.compile(r"""image\(\s*['"]""" + re.escape(image) + """['"]""")
    for file in ("block.mjml", "block.amp.html", "block.txt"):
        path = block.folder / file
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for number, text in enumerate(lines, 1):
            if call.search(text):
                return f"{path}:{number}"
    return str(block.folder)


def _one_reader_per_variant(variants: dict[str, int]) -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    for i in range(10_000):
        variant = assign(variants, "check", f"check-{i}")
        found.setdefault(variant, f"check-{i}")
        if len(found) == sum(1 for w in variants.values() if w > 0):
            break
    return sorted(found.items())


def _craft_problems(
    settings: Settings, blocks: dict[str, Block], env: SandboxedEnvironment
) -> list[str]:
    """Contrast below 4.5:1 and reader fields without a fallback, in every block."""
    theme_css, amp_css = (
        (settings.templates_dir / name).read_text(encoding="utf-8")
        if (settings.templates_dir / name).is_file()
        else ""
        for name in ("theme.css", "theme.amp.css")
    )
    problems = []
    for block in blocks.values():
        problems += lint.contrast_problems(block, theme_css, amp_css)
        problems += lint.fallback_problems(block, env)
    return problems


def _collect(problems: list[str], env: SandboxedEnvironment, part: Part) -> None:
    try:
        check_part(env, part)
    except SourceError as exc:
        problems.append(str(exc))
