"""One format of a compiled template as a layout of pieces, and the per-reader render.

Most of an email is the same for every reader of a send: the header, the hero, the
editorial text, the footer. A piece whose Jinja reads nothing of the reader (only its
block's params, the template's links and theme, and per-send values such as the
campaign, variant, locale or consent) can be shared. For each combination of the
per-send values a layout's shared pieces read (and of which blocks are shown), the
layout is rendered once into a *skeleton*: the shared pieces' text, joined, with holes
where the pieces that read the reader go (a name, a cart, recommendations) and
sentinels where the reader's own URLs go (feeds, images, pixel, the reader token of
click links). A reader's render is then the skeleton, with its holes rendered by Jinja
and its URLs signed for the reader.

`pieces` compiles (what a piece reads, params folded in, shared loop bodies),
`skeletons` keeps the skeletons, `reader` assembles a reader's render, `output` is what
comes out; what they rely on in Jinja's internals is in `jinja_internals`.
"""

from app.render.layout.output import Output, Static
from app.render.layout.pieces import SHARED_BODY_FILTER, Layout, Piece, SharedBody, Slot, piece
from app.render.layout.reader import ReaderRender, shared_body
from app.render.layout.skeletons import Fragments, Hole, Skeleton, Url

__all__ = [
    "SHARED_BODY_FILTER",
    "Fragments",
    "Hole",
    "Layout",
    "Output",
    "Piece",
    "ReaderRender",
    "SharedBody",
    "Skeleton",
    "Slot",
    "Static",
    "Url",
    "piece",
    "shared_body",
]
