"""Files images are drawn from: designers' assets under `blocks/`, `fallbacks/`, and the
catalog's local product images. A name never leaves its folder."""

from __future__ import annotations

import re
from pathlib import Path

from cachetools import TTLCache

from app.images.base import ASSET_REF, ParamError

RESOLVE_TTL_S = 5.0  # how long a name keeps pointing at the file found for it

# A catalog product's `image`: a file name (or short relative path) in the assets folder.
CATALOG_IMAGE = re.compile(
    r"(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*/){0,4}[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(?:png|jpe?g|gif|webp)",
    re.IGNORECASE,
)


class Assets:
    def __init__(self, blocks: Path, fallbacks: Path, catalog: Path | None) -> None:
        self._roots = {"blocks": blocks.resolve(), "fallbacks": fallbacks.resolve()}
        self._catalog = catalog.resolve() if catalog is not None else None
        self._found: TTLCache[str, Path] = TTLCache(maxsize=1024, ttl=RESOLVE_TTL_S)

    def path(self, ref: str) -> Path:
        """The file named by a 'blocks/...' or 'fallbacks/...' reference, or `ParamError`."""
        path = self._found.get(ref)
        if path is None:
            if not ASSET_REF.fullmatch(ref) or ".." in ref:
                raise ParamError(f"{ref!r} is not a file under blocks/ or fallbacks/")
            folder, _, rest = ref.partition("/")
            path = self._found[ref] = self._inside(self._roots[folder], rest, ref)
        return path

    def catalog_image(self, name: str) -> Path | None:
        """The catalog's local image `name`, or None when there is none to use."""
        if self._catalog is None or not CATALOG_IMAGE.fullmatch(name) or ".." in name:
            return None
        key = "catalog/" + name
        path = self._found.get(key)
        if path is None:
            try:
                path = self._found[key] = self._inside(self._catalog, name, name)
            except ParamError:
                return None
        return path

    @staticmethod
    def _inside(root: Path, rest: str, ref: str) -> Path:
        path = (root / rest).resolve()
        # resolve() follows symbolic links: a link pointing out of the folder is refused.
        if not path.is_relative_to(root) or not path.is_file():
            raise ParamError(f"no such file: {ref}")
        return path
