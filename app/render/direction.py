"""The language an email's markup declares: `<html lang>` is the template's `language`
(the copy is written in it; the reader's `locale` does not change it), and `dir` is said
outright, since MJML's default, `auto`, would let a reader's name in another script,
first in the preheader, turn the whole email around. Right to left, MJML's columns run
from the right and its text starts there."""

from __future__ import annotations

from app.reader.formats import parse_language

RTL_ATTRIBUTES = (
    '<mj-text align="right"/><mj-section direction="rtl"/><mj-group direction="rtl"/>'
    '<mj-column direction="rtl"/>'
)


def rtl(language: str) -> bool:
    """Whether `language` (a tag `sources` checked) is written right to left."""
    return bool(parse_language(language).character_order == "right-to-left")


def mjml_root(language: str) -> str:
    """The MJML document's opening tag."""
    return f'<mjml lang="{language}" dir="{"rtl" if rtl(language) else "ltr"}">'


def mjml_attributes(language: str) -> str:
    """The `<mj-attributes>` defaults the language's direction asks for."""
    return RTL_ATTRIBUTES if rtl(language) else ""


def html_attributes(language: str) -> str:
    """The AMP part's `<html>` attributes (AMP writes no `dir` of its own: ltr)."""
    return f' lang="{language}"' + (' dir="rtl"' if rtl(language) else "")
