"""A parser for small XML documents from the network that refuses every DTD construct.

The parser itself (expat) reports each declaration to a handler that raises, whatever the document's
encoding (UTF-8, UTF-16 with a BOM, a declared legacy encoding): a DOCTYPE, an ENTITY or NOTATION
declaration or an external entity reference ends the parse before anything is expanded. Without
a DTD only the five predefined entities and character references exist, so neither an entity
expansion bomb nor an external entity can be written. The tree is built by ElementTree's own
`TreeBuilder`, with namespaced names as ElementTree writes them (`{uri}local`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from xml.parsers import expat

__all__ = ["RefusedXMLError", "XMLFormatError", "parse_xml"]


class XMLFormatError(ValueError):
    """The document is not well-formed XML."""


class RefusedXMLError(XMLFormatError):
    """The document declares a DOCTYPE, an entity or a notation, or references an external entity."""


def _refuse(construct: str) -> Callable[..., None]:
    def handler(*_: object) -> None:
        raise RefusedXMLError(f"the parser met {construct}; no DTD is accepted (entity expansion)")

    return handler


def _name(raw: str) -> str:
    uri, separator, local = raw.rpartition("}")
    return f"{{{uri}}}{local}" if separator else raw


def parse_xml(body: bytes) -> ET.Element:
    """The root element of `body`; raises RefusedXMLError on any DTD construct, XMLFormatError otherwise."""
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse("a DOCTYPE declaration")
    parser.EntityDeclHandler = _refuse("an ENTITY declaration")
    parser.UnparsedEntityDeclHandler = _refuse("an unparsed ENTITY declaration")
    parser.NotationDeclHandler = _refuse("a NOTATION declaration")
    parser.ExternalEntityRefHandler = _refuse("an external entity reference")
    parser.buffer_text = True
    parser.StartElementHandler = lambda tag, attrs: builder.start(
        _name(tag), {_name(key): value for key, value in attrs.items()}
    )
    parser.EndElementHandler = lambda tag: builder.end(_name(tag))
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(body, True)
    except expat.ExpatError as e:
        raise XMLFormatError(f"not well-formed XML ({expat.ErrorString(e.code)} at line {e.lineno})") from e
    return builder.close()
