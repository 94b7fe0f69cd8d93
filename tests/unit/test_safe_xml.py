"""The RSS parser refuses DOCTYPE and ENTITY declarations itself, whatever the document's encoding."""

from __future__ import annotations

import pytest

from xlm_core.data.download import DownloadError
from xlm_core.data.safe_xml import RefusedXMLError, XMLFormatError, parse_xml
from xlm_core.data.wikipedia import parse_untrusted_xml, resolve_latest

DATE = "20240101"
FEED = (
    '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><item>'
    "<title>AT&amp;T</title><link>https://dumps.wikimedia.org/enwiki/{date}</link><dc:creator>x</dc:creator>"
    "</item></channel></rss>\n"
)
INTERNAL_ENTITY = '<!DOCTYPE rss [<!ENTITY d "{date}">]>\n'
BILLION_LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10))
    + "]>\n"
)


def _feed(prolog: str, encoding: str) -> bytes:
    declaration = f'<?xml version="1.0" encoding="{encoding}"?>\n'
    body = declaration + prolog + FEED.format(date="&d;" if prolog else DATE)
    if encoding == "utf-16":
        return body.encode("utf-16")  # with a BOM
    return body.encode(encoding)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "iso-8859-1"])
def test_a_plain_feed_parses_in_any_encoding(encoding):
    root = parse_xml(_feed("", encoding))
    assert root.find("channel/item/title").text == "AT&T"
    assert root.find("channel/item/{http://purl.org/dc/elements/1.1/}creator").text == "x"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "iso-8859-1"])
def test_an_internal_entity_is_refused_in_any_encoding(encoding):
    body = _feed(INTERNAL_ENTITY, encoding)
    assert b"<!DOCTYPE" not in body or encoding != "utf-16"  # a byte regex would not see it in UTF-16
    with pytest.raises(RefusedXMLError, match="DOCTYPE declaration"):
        parse_xml(body)


def test_billion_laughs_is_refused_before_any_expansion():
    body = (BILLION_LAUGHS + "<rss><title>&lol9;</title></rss>").encode("utf-8")
    with pytest.raises(RefusedXMLError):
        parse_xml(body)
    with pytest.raises(RefusedXMLError):
        parse_xml(body.decode().encode("utf-16"))


@pytest.mark.parametrize(
    "body",
    [
        b'<!DOCTYPE rss SYSTEM "http://127.0.0.1:1/evil.dtd"><rss/>',
        b'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><rss>&xxe;</rss>',
        b'<!DOCTYPE rss [<!NOTATION n SYSTEM "x">]><rss/>',
    ],
)
def test_external_doctypes_entities_and_notations_are_refused(body):
    with pytest.raises(RefusedXMLError):
        parse_xml(body)


def test_undefined_entities_and_broken_xml_are_format_errors():
    with pytest.raises(XMLFormatError, match="undefined entity"):
        parse_xml(b"<rss>&lol;</rss>")
    with pytest.raises(XMLFormatError) as info:
        parse_xml(b"<rss><item></rss>")
    assert not isinstance(info.value, RefusedXMLError)


def test_resolve_latest_refuses_a_utf16_feed_with_an_entity(tmp_path):
    feed = tmp_path / "enwiki" / "latest" / "enwiki-latest-pages-articles.xml.bz2-rss.xml"
    feed.parent.mkdir(parents=True)
    feed.write_bytes(_feed("", "utf-16"))
    assert resolve_latest(str(tmp_path), "en") == DATE
    feed.write_bytes(_feed(INTERNAL_ENTITY.replace("{date}", DATE), "utf-16"))
    with pytest.raises(DownloadError, match=r"enwiki-latest-pages-articles\.xml\.bz2-rss\.xml: XML with a DOCTYPE"):
        resolve_latest(str(tmp_path), "en")
    with pytest.raises(DownloadError, match="not a valid XML document"):
        parse_untrusted_xml(b"<rss>", url="http://x/feed.xml")
