"""An offline mirror of the Wikipedia dump server and the OPUS object store, built from real text.

No Wikipedia or OPUS copy exists offline, but every Debian-based machine carries human-written
text in two forms that match them closely:

- man pages (`/usr/share/man/man1`, `/usr/share/man/<lang>/man1`), converted from roff to
  wikitext and written as a MediaWiki export-0.11 dump (`pages-articles.xml.bz2`, its multistream
  variant and index, checksum lists, `dumpstatus.json`, the `latest` RSS), laid out as on
  dumps.wikimedia.org;
- gettext catalogs (`/usr/share/locale/<lang>/LC_MESSAGES/*.mo`), English msgid → translated
  msgstr, written as an OPUS moses zip, the same kind of data as OPUS GNOME/KDE4/Ubuntu.

The real downloader, WikiExtractor and zip reader then run against this mirror unchanged.
Output is deterministic: the same machine gives the same bytes.
"""

from __future__ import annotations

import bz2
import functools
import hashlib
import json
import logging
import os
import re
import struct
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from xlm_core.data.manpage import ManPage, read_manpage
from xlm_core.io import atomic_open, atomic_path

__all__ = [
    "DemoMirrorError",
    "build_demo_mirror",
    "build_opus_zip",
    "build_wikipedia_dump",
    "catalog_pairs",
    "read_mo",
]

logger = logging.getLogger(__name__)

MAN_ROOT = Path("/usr/share/man")
LOCALE_ROOT = Path("/usr/share/locale")
TIMESTAMP = "2024-01-01T00:00:00Z"
# Localised names of the namespaces WikiExtractor looks at (talk, template, module).
NAMESPACE_NAMES = {
    "de": {1: "Diskussion", 10: "Vorlage", 828: "Modul"},
    "es": {1: "Discusión", 10: "Plantilla", 828: "Módulo"},
    "fr": {1: "Discussion", 10: "Modèle", 828: "Module"},
}
NAMESPACES = {
    -2: "Media",
    -1: "Special",
    0: "",
    1: "Talk",
    2: "User",
    3: "User talk",
    4: "Wikipedia",
    5: "Wikipedia talk",
    6: "File",
    7: "File talk",
    8: "MediaWiki",
    9: "MediaWiki talk",
    10: "Template",
    11: "Template talk",
    12: "Help",
    13: "Help talk",
    14: "Category",
    15: "Category talk",
    828: "Module",
    829: "Module talk",
}
TEMPLATE_DOC = "This template shows a box of key facts about a software package."
TALK_TEXT = "This talk page is for discussing improvements to the article converted from the {0} manual page."
PAGES_PER_STREAM = 100


class DemoMirrorError(ValueError):
    """This machine lacks the man pages or gettext catalogs the demo mirror is built from."""


def _title(name: str) -> str:
    return name[:1].upper() + name[1:]


def _base36_sha1(data: bytes) -> str:
    number, digits = int(hashlib.sha1(data).hexdigest(), 16), ""
    while number:
        number, rest = divmod(number, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[rest] + digits
    return digits.rjust(31, "0")


# ---------------------------------------------------------------- Wikipedia dump


def _man_dir(lang: str, man_root: Path) -> Path:
    if lang == "en":
        return man_root / "man1"
    candidates = [man_root / lang / "man1"] + sorted(man_root.glob(f"{lang}_*/man1"))
    for directory in candidates:
        if any(directory.glob("*.1.gz")):
            return directory
    raise DemoMirrorError(
        f"no man pages for language {lang!r}: looked in {candidates[0]} and {man_root}/{lang}_*/man1. "
        f"Install them (e.g. `apt-get install manpages-{lang}`) or drop {lang!r} from the demo languages."
    )


def _choose_pages(lang: str, max_pages: int, prefer_langs: list[str], man_root: Path) -> tuple[list[ManPage], dict]:
    directory = _man_dir(lang, man_root)
    # scandir: DirEntry answers is_symlink() without a stat call (man1 may hold ~20k pages).
    files = {e.name[: -len(".1.gz")]: e for e in os.scandir(directory) if e.name.endswith(".1.gz")}
    shared = set(files)
    for other in prefer_langs:
        shared &= {p.name[: -len(".1.gz")] for p in _man_dir(other, man_root).glob("*.1.gz")}
    if not prefer_langs and lang == "en":  # translated pages first: core tools with well-kept manuals
        shared &= {p.name[: -len(".1.gz")] for p in man_root.glob("*/man1/*.1.gz")}
    order = sorted(shared) + sorted(set(files) - shared)
    pages: list[ManPage] = []
    aliases: dict[str, str] = {}  # alias name -> target name (symlinks and `.so` pages)
    for name in order:
        entry = files[name]
        path = Path(entry.path)
        if entry.is_symlink():
            target = path.resolve()
            if target.parent == directory.resolve() and target.name.endswith(".1.gz"):
                aliases[name] = target.name[: -len(".1.gz")]
            if not target.is_file():
                continue
        if len(pages) >= max_pages:
            continue
        page = read_manpage(path, lang=lang)
        if page.alias_of:
            aliases[name] = page.alias_of
        elif page.is_article():
            pages.append(page)
    if not pages:
        raise DemoMirrorError(f"no convertible man pages for {lang!r} in {directory}")
    chosen = {page.name for page in pages}
    return pages, {a: t for a, t in sorted(aliases.items()) if t in chosen and a not in chosen and a != t}


def _page_xml(title: str, ns: int, page_id: int, text: str, comment: str, redirect: str | None = None) -> str:
    data = text.encode("utf-8")
    lines = [
        "  <page>",
        f"    <title>{escape(title)}</title>",
        f"    <ns>{ns}</ns>",
        f"    <id>{page_id}</id>",
    ]
    if redirect:
        lines.append(f"    <redirect title={quoteattr(redirect)} />")
    rev_id = 100_000 + page_id
    lines += [
        "    <revision>",
        f"      <id>{rev_id}</id>",
        f"      <parentid>{rev_id - 1}</parentid>",
        f"      <timestamp>{TIMESTAMP}</timestamp>",
        "      <contributor>",
        "        <username>Manpage import</username>",
        "        <id>42</id>",
        "      </contributor>",
        f"      <comment>{escape(comment)}</comment>",
        f"      <origin>{rev_id}</origin>",
        "      <model>wikitext</model>",
        "      <format>text/x-wiki</format>",
        f'      <text bytes="{len(data)}" sha1="{_base36_sha1(data)}" xml:space="preserve">'
        f"{escape(text, {chr(34): '&quot;'})}</text>",
        f"      <sha1>{_base36_sha1(data)}</sha1>",
        "    </revision>",
        "  </page>",
    ]
    return "\n".join(lines) + "\n"


def _siteinfo_xml(lang: str) -> str:
    names = {**NAMESPACES, **NAMESPACE_NAMES.get(lang, {})}
    namespaces = [
        f'      <namespace key="{key}" case="first-letter" />'
        if key == 0
        else f'      <namespace key="{key}" case="first-letter">{escape(name)}</namespace>'
        for key, name in names.items()
    ]
    return (
        "\n".join(
            [
                f'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" '
                f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                f'xsi:schemaLocation="http://www.mediawiki.org/xml/export-0.11/ '
                f'http://www.mediawiki.org/xml/export-0.11.xsd" version="0.11" xml:lang="{lang}">',
                "  <siteinfo>",
                "    <sitename>Wikipedia</sitename>",
                f"    <dbname>{lang}wiki</dbname>",
                f"    <base>https://{lang}.wikipedia.org/wiki/Main_Page</base>",
                "    <generator>MediaWiki 1.42.0-wmf.10</generator>",
                "    <case>first-letter</case>",
                "    <namespaces>",
                *namespaces,
                "    </namespaces>",
                "  </siteinfo>",
            ]
        )
        + "\n"
    )


def _dump_pages(lang: str, pages: list[ManPage], aliases: dict[str, str]) -> list[tuple[int, str, str]]:
    """(page id, title, page XML) in dump order: template, articles, talk page, redirects."""
    names = {**NAMESPACES, **NAMESPACE_NAMES.get(lang, {})}
    template = f"{names[10]}:Infobox software"
    out = [(10, template, _page_xml(template, 10, 10, f"<noinclude>{TEMPLATE_DOC}</noinclude>", "documentation"))]
    page_id = 11
    for page in pages:
        out.append(
            (
                page_id,
                _title(page.name),
                _page_xml(
                    _title(page.name), 0, page_id, page.wikitext(), f"Imported from the {page.name}(1) manual page"
                ),
            )
        )
        page_id += 1
    first = _title(pages[0].name)
    talk = f"{names[1]}:{first}"
    out.append((page_id, talk, _page_xml(talk, 1, page_id, TALK_TEXT.format(pages[0].name), "new section")))
    redirects = {f"{first} (command)": first, **{_title(a): _title(t) for a, t in aliases.items()}}
    for title, target in redirects.items():
        page_id += 1
        out.append((page_id, title, _page_xml(title, 0, page_id, f"#REDIRECT [[{target}]]", "redirect", target)))
    return out


def _write_checked(path: Path, data: bytes) -> dict:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return {"size": len(data), "sha1": hashlib.sha1(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}


def build_wikipedia_dump(
    lang: str,
    date: str,
    out_root: Path,
    *,
    max_pages: int,
    prefer_langs: list[str] | None = None,
    man_root: Path = MAN_ROOT,
) -> Path:
    """Write `{out_root}/{lang}wiki/{date}/{lang}wiki-{date}-pages-articles.xml.bz2` and its companions.

    Args:
        prefer_langs: languages whose man pages should come first (commands present in all of them);
            default: English for other languages, pages translated into any language for English.

    Returns:
        Path of the pages-articles dump.
    """
    if prefer_langs is None:
        prefer_langs = [] if lang == "en" else ["en"]
    pages, aliases = _choose_pages(lang, max_pages, prefer_langs, man_root)
    entries = _dump_pages(lang, pages, aliases)
    header, footer = _siteinfo_xml(lang), "</mediawiki>\n"
    xml = (header + "".join(xml for _, _, xml in entries) + footer).encode("utf-8")
    day = Path(out_root) / f"{lang}wiki" / date
    prefix = f"{lang}wiki-{date}-pages-articles"
    files = {f"{prefix}.xml.bz2": _write_checked(day / f"{prefix}.xml.bz2", bz2.compress(xml, 9))}

    # Multistream: stream 0 holds the siteinfo, then one stream per 100 pages, the last the footer.
    streams, index, offset = [bz2.compress(header.encode("utf-8"), 9)], [], 0
    offset = len(streams[0])
    for start in range(0, len(entries), PAGES_PER_STREAM):
        chunk = entries[start : start + PAGES_PER_STREAM]
        index += [f"{offset}:{page_id}:{title}" for page_id, title, _ in chunk]
        streams.append(bz2.compress("".join(xml for _, _, xml in chunk).encode("utf-8"), 9))
        offset += len(streams[-1])
    streams.append(bz2.compress(footer.encode("utf-8"), 9))
    multi = f"{lang}wiki-{date}-pages-articles-multistream"
    files[f"{multi}.xml.bz2"] = _write_checked(day / f"{multi}.xml.bz2", b"".join(streams))
    files[f"{multi}-index.txt.bz2"] = _write_checked(
        day / f"{multi}-index.txt.bz2", bz2.compress(("\n".join(index) + "\n").encode("utf-8"), 9)
    )

    for algorithm in ("sha1", "md5"):
        with atomic_open(day / f"{lang}wiki-{date}-{algorithm}sums.txt") as handle:
            handle.writelines(f"{info[algorithm]}  {name}\n" for name, info in sorted(files.items()))
    jobs = {}
    for job, names in (
        ("articlesdump", [f"{prefix}.xml.bz2"]),
        ("articlesmultistreamdump", [f"{multi}.xml.bz2", f"{multi}-index.txt.bz2"]),
    ):
        jobs[job] = {
            "status": "done",
            "updated": TIMESTAMP.replace("T", " ").rstrip("Z"),
            "files": {name: {**files[name], "url": f"/{lang}wiki/{date}/{name}"} for name in names},
        }
    with atomic_open(day / "dumpstatus.json") as handle:
        json.dump({"jobs": jobs, "version": "0.8"}, handle, indent=1, sort_keys=True)
    for kind in ("pages-articles", "pages-articles-multistream"):
        _write_rss(Path(out_root), lang, date, kind)
    logger.info("demo dump %s: %d articles, %d aliases, %d bytes of XML", day, len(pages), len(aliases), len(xml))
    return day / f"{prefix}.xml.bz2"


def _write_rss(root: Path, lang: str, date: str, kind: str) -> None:
    base = "https://dumps.wikimedia.org"
    name = f"{lang}wiki-latest-{kind}.xml.bz2"
    with atomic_open(root / f"{lang}wiki" / "latest" / f"{name}-rss.xml") as handle:
        handle.write(
            '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/">\n  <channel>\n'
            f"    <title>{base}/{lang}wiki/latest/{name}</title>\n"
            f"    <link>{base}/{lang}wiki/latest/</link>\n"
            f"    <description>Wikimedia dump updates for {lang}wiki</description>\n"
            "    <item>\n"
            f"      <title>{base}/{lang}wiki/{date}/{lang}wiki-{date}-{kind}.xml.bz2</title>\n"
            f"      <link>{base}/{lang}wiki/{date}</link>\n"
            f"      <description>&lt;a href=&quot;{base}/{lang}wiki/{date}&quot;&gt;"
            f"{base}/{lang}wiki/{date}&lt;/a&gt;</description>\n"
            "      <pubDate>Mon, 01 Jan 2024 00:00:00 GMT</pubDate>\n"
            "    </item>\n  </channel>\n</rss>\n"
        )


# ---------------------------------------------------------------- gettext catalogs → OPUS zip


def read_mo(path: Path) -> list[tuple[str, str]]:
    """(msgid, msgstr[0]) pairs of a compiled gettext catalog; header and untranslated entries skipped."""
    data = Path(path).read_bytes()
    if len(data) < 20:
        raise DemoMirrorError(f"{path}: too short for a .mo file")
    for order in ("<", ">"):
        if struct.unpack(f"{order}I", data[:4])[0] == 0x950412DE:
            break
    else:
        raise DemoMirrorError(f"{path}: not a gettext .mo file (bad magic {data[:4].hex()})")
    _, count, originals, translations = struct.unpack(f"{order}4I", data[4:20])
    raw: list[tuple[bytes, bytes]] = []
    for i in range(count):
        length_o, offset_o = struct.unpack_from(f"{order}2I", data, originals + 8 * i)
        length_t, offset_t = struct.unpack_from(f"{order}2I", data, translations + 8 * i)
        raw.append((data[offset_o : offset_o + length_o], data[offset_t : offset_t + length_t]))
    charset = "utf-8"
    for msgid, msgstr in raw:
        if msgid == b"":
            match = re.search(rb"charset=([\w-]+)", msgstr)
            if match and match.group(1).lower() != b"charset":
                charset = match.group(1).decode("ascii")
    pairs = []
    for msgid, msgstr in raw:
        msgid = msgid.split(b"\x04", 1)[-1].split(b"\x00", 1)[0]  # drop msgctxt and the plural msgid
        msgstr = msgstr.split(b"\x00", 1)[0]  # msgstr[0]
        if not msgid or not msgstr:
            continue
        try:
            pairs.append((msgid.decode("utf-8"), msgstr.decode(charset)))
        except (UnicodeDecodeError, LookupError):
            continue
    return pairs


def _locale_dir(lang: str, locale_root: Path) -> Path:
    candidates = [locale_root / lang / "LC_MESSAGES"] + sorted(locale_root.glob(f"{lang}_*/LC_MESSAGES"))
    for directory in candidates:
        if any(directory.glob("*.mo")):
            return directory
    raise DemoMirrorError(
        f"no gettext catalogs for language {lang!r}: looked in {candidates[0]} and "
        f"{locale_root}/{lang}_*/LC_MESSAGES. Pick a language this machine has translations for."
    )


def catalog_pairs(lang: str, *, locale_root: Path = LOCALE_ROOT) -> list[tuple[str, str]]:
    """Distinct (English, `lang`) segment pairs from every catalog of `lang`, in a fixed pseudo-random order."""
    return list(_catalog_pairs(lang, Path(locale_root)))


@functools.lru_cache(maxsize=8)
def _catalog_pairs(lang: str, locale_root: Path) -> tuple[tuple[str, str], ...]:
    seen: set[tuple[str, str]] = set()
    for path in sorted(_locale_dir(lang, locale_root).glob("*.mo")):
        for msgid, msgstr in read_mo(path):
            english, other = " ".join(msgid.split()), " ".join(msgstr.split())
            if len(english.split()) >= 3 and other and english != other:
                seen.add((english, other))
    # Sorting by a hash spreads catalogs and alphabetical runs, so `max_pairs` takes a fair sample.
    return tuple(sorted(seen, key=lambda pair: (hashlib.sha1("\t".join(pair).encode()).hexdigest(), pair)))


def build_opus_zip(
    pair: str,
    out_root: Path,
    *,
    corpus: str = "GNOME",
    version: str = "v1",
    max_pairs: int,
    locale_root: Path = LOCALE_ROOT,
) -> Path:
    """Write `{out_root}/OPUS-{corpus}/{version}/moses/{l1}-{l2}.txt.zip` from gettext catalogs."""
    l1, l2 = sorted(pair.split("-"))
    if "en" not in (l1, l2) or l1 == l2:
        raise DemoMirrorError(f"demo pair {pair!r}: gettext catalogs give English-X pairs only; use en-<lang>")
    other = l2 if l1 == "en" else l1
    pairs = catalog_pairs(other, locale_root=locale_root)[:max_pairs]
    sides = {"en": [en for en, _ in pairs], other: [tr for _, tr in pairs]}
    path = Path(out_root) / f"OPUS-{corpus}" / version / "moses" / f"{l1}-{l2}.txt.zip"
    readme = (
        f"{corpus} {version}, {l1}-{l2}: {len(pairs)} sentence pairs.\n\n"
        "Offline demo mirror: English message ids and their translations, read from the gettext\n"
        f"catalogs under {_locale_dir(other, locale_root)} of the machine that built it.\n"
    )
    members = [
        (f"{corpus}.{l1}-{l2}.{l1}", "".join(line + "\n" for line in sides[l1])),
        (f"{corpus}.{l1}-{l2}.{l2}", "".join(line + "\n" for line in sides[l2])),
        ("README", readme),
        ("LICENSE", "The catalogs keep the licences of their packages (see /usr/share/doc/*/copyright).\n"),
    ]
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in members:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, text.encode("utf-8"))
    logger.info("demo OPUS zip %s: %d pairs", path, len(pairs))
    return path


def build_demo_mirror(
    out_root: Path,
    *,
    langs: list[str],
    pairs: list[str],
    date: str,
    max_pages: int,
    max_pairs: int,
    corpora: list[tuple[str, str, str]] | None = None,
) -> dict:
    """Build the whole mirror: `out_root/wikipedia` (dump server) and `out_root/opus` (object store).

    Args:
        corpora: (corpus, version, pair) names to publish the catalog pairs under, so a config naming
            e.g. MultiUN v1 finds its zip; default: GNOME v1 for each of `pairs`.

    Returns:
        `{"wikipedia_base_url", "opus_base_url", "dumps": {lang: path}, "opus": {pair: path}}`.
    """
    out_root = Path(out_root).resolve()
    dumps = {
        lang: build_wikipedia_dump(
            lang,
            date,
            out_root / "wikipedia",
            max_pages=max_pages,
            prefer_langs=[other for other in langs if other != lang],
        )
        for lang in langs
    }
    opus = {
        f"{corpus}/{version}/{pair}" if corpora else pair: build_opus_zip(
            pair, out_root / "opus", corpus=corpus, version=version, max_pairs=max_pairs
        )
        for corpus, version, pair in (corpora or [("GNOME", "v1", pair) for pair in pairs])
    }
    return {
        "wikipedia_base_url": (out_root / "wikipedia").as_uri(),
        "opus_base_url": (out_root / "opus").as_uri(),
        "dumps": {lang: str(path) for lang, path in dumps.items()},
        "opus": {pair: str(path) for pair, path in opus.items()},
    }
