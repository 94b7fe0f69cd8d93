"""An offline mirror of the Wikipedia dump server and the OPUS object store, built from real text.

No Wikipedia or OPUS copy exists offline. The mirror is built from pinned, versioned inputs only
(`demo_sources.SOURCES`: fetched by name and version, checked against committed SHA-256 digests), so
every machine builds the same corpora whatever its own OS packages:

- man pages of the Debian packages `manpages`/`manpages-dev` 6.03-2 (English) and `manpages-fr`
  4.18.1-1 (French), converted from roff to wikitext and written as a MediaWiki export-0.11 dump
  (`pages-articles.xml.bz2`, its multistream variant and index, checksum lists, `dumpstatus.json`,
  the `latest` RSS), laid out as on dumps.wikimedia.org;
- gettext catalogs read from the wheels of Django, Sphinx, wagtail, Trac and pretix, English msgid →
  translated msgstr, written as an OPUS moses zip: the same kind of data as OPUS GNOME/KDE4/Ubuntu.

The real downloader, WikiExtractor and zip reader then run against this mirror unchanged. Output is
deterministic; `demo_manifest.check_corpus` logs the corpus digest and compares it with the committed
manifest when the mirror is built with the demo config's sizes.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import logging
import os
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from xlm_core.data.demo_catalogs import DemoMirrorError, build_opus_zip, catalog_pairs, read_mo
from xlm_core.data.demo_manifest import check_corpus
from xlm_core.data.demo_sources import ensure_demo_sources
from xlm_core.data.manpage import ManPage, read_manpage, split_page_name
from xlm_core.io import atomic_open, atomic_path

__all__ = [
    "DemoMirrorError",
    "build_demo_mirror",
    "build_opus_zip",
    "build_wikipedia_dump",
    "catalog_pairs",
    "mirror_files",
    "read_mo",
]

logger = logging.getLogger(__name__)

# Sections in the order pages are taken (commands, administration, overviews, file formats, devices,
# system calls, library functions, games); pages present in several languages come first, whatever their
# section. Between English and French they are mostly overviews (7) and file formats (5).
SECTION_ORDER = ("1", "8", "7", "5", "4", "2", "3", "6")
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


def _title(name: str) -> str:
    return name[:1].upper() + name[1:]


def _base36_sha1(data: bytes) -> str:
    number, digits = int(hashlib.sha1(data).hexdigest(), 16), ""
    while number:
        number, rest = divmod(number, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[rest] + digits
    return digits.rjust(31, "0")


# ---------------------------------------------------------------- Wikipedia dump


def _man_dirs(lang: str, man_root: Path) -> list[Path]:
    """`lang`'s section folders under a man tree (`man7/`, or `fr/man7/`, `fr_FR/man7/`), in `SECTION_ORDER`."""
    bases = [man_root] if lang == "en" else [man_root / lang, *sorted(man_root.glob(f"{lang}_*"))]
    for base in bases:
        dirs = [base / f"man{section}" for section in SECTION_ORDER if any((base / f"man{section}").glob("*.gz"))]
        if dirs:
            return dirs
    raise DemoMirrorError(
        f"no man pages for language {lang!r}: looked in {bases[0]}/man* and {man_root}/{lang}_*/man*. Fix: pin "
        f"its manpages-{lang} package in xlm_core/data/demo_sources.py, or drop {lang!r} from the demo languages."
    )


def _page_files(lang: str, man_root: Path) -> dict[str, tuple[int, str, Path]]:
    """name → (section rank, section, file): one file per page name, from the first section of
    `SECTION_ORDER` that has it."""
    files: dict[str, tuple[int, str, Path]] = {}
    for directory in _man_dirs(lang, man_root):
        rank = SECTION_ORDER.index(directory.name.removeprefix("man"))
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            name, section = split_page_name(entry.name)
            if entry.name.endswith(".gz") and section and name not in files:
                files[name] = (rank, section, Path(entry.path))
    return files


def _other_langs(man_root: Path) -> list[str]:
    return sorted(p.name for p in man_root.iterdir() if p.is_dir() and not p.name.startswith("man"))


def _choose_pages(lang: str, max_pages: int, prefer_langs: list[str], man_root: Path) -> tuple[list[ManPage], dict]:
    files = _page_files(lang, man_root)

    def same_pages(other: str) -> set[str]:  # same name and section: the same manual (basename(1) ≠ basename(3))
        theirs = _page_files(other, man_root)
        return {name for name, (_, section, _) in files.items() if name in theirs and theirs[name][1] == section}

    shared = set(files)
    for other in prefer_langs:
        shared &= same_pages(other)
    if not prefer_langs and lang == "en":  # translated pages first: the best-kept manuals
        translated: set[str] = set()
        for other in _other_langs(man_root):
            translated |= same_pages(other)
        shared &= translated
    order = sorted(files, key=lambda name: (name not in shared, files[name][0], name))
    pages: list[ManPage] = []
    aliases: dict[str, str] = {}  # alias name -> target name (symlinks and `.so` pages)
    tree = man_root.resolve()
    for name in order:
        path = files[name][2]
        if path.is_symlink():
            target = path.resolve()
            if target.is_file() and target.is_relative_to(tree):
                aliases[name] = split_page_name(target.name)[0]
            continue
        if len(pages) >= max_pages:
            continue
        page = read_manpage(path, lang=lang)
        if page.alias_of:
            aliases[name] = page.alias_of
        elif page.is_article():
            pages.append(page)
    if not pages:
        raise DemoMirrorError(f"no convertible man pages for {lang!r} under {man_root}")
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
                    _title(page.name),
                    0,
                    page_id,
                    page.wikitext(),
                    f"Imported from the {page.name}({page.section}) manual page",
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
    man_root: Path | None = None,
) -> Path:
    """Write `{out_root}/{lang}wiki/{date}/{lang}wiki-{date}-pages-articles.xml.bz2` and its companions.

    Args:
        prefer_langs: languages whose man pages should come first (pages present in all of them);
            default: English for other languages, pages translated into any language for English.
        man_root: a man tree (`man7/`, `fr/man7/`, ...); default: the one unpacked from the pinned debs.

    Returns:
        Path of the pages-articles dump.
    """
    if prefer_langs is None:
        prefer_langs = [] if lang == "en" else ["en"]
    root = Path(man_root) if man_root is not None else ensure_demo_sources().man_root
    pages, aliases = _choose_pages(lang, max_pages, prefer_langs, root)
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


def build_demo_mirror(
    out_root: Path,
    *,
    langs: list[str],
    pairs: list[str],
    date: str,
    max_pages: int,
    max_pairs: int,
    corpora: list[tuple[str, str, str]] | None = None,
    check: bool = True,
) -> dict:
    """Build the whole mirror: `out_root/wikipedia` (dump server) and `out_root/opus` (object store).

    Args:
        corpora: (corpus, version, pair) names to publish the catalog pairs under, so a config naming
            e.g. MultiUN v1 finds its zip; default: GNOME v1 for each of `pairs`.
        check: log the corpus digest and, for the demo config's parameters, compare it with the
            committed manifest (`demo_manifest.check_corpus`; raises `DemoCorpusError` on a difference).

    Returns:
        `{"wikipedia_base_url", "opus_base_url", "dumps": {lang: path}, "opus": {pair: path}, "digest"}`.
    """
    params = {"langs": langs, "pairs": pairs, "date": date, "max_pages": max_pages, "max_pairs": max_pairs}
    params["corpora"] = corpora
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
    built = {
        "wikipedia_base_url": (out_root / "wikipedia").as_uri(),
        "opus_base_url": (out_root / "opus").as_uri(),
        "dumps": {lang: str(path) for lang, path in dumps.items()},
        "opus": {pair: str(path) for pair, path in opus.items()},
    }
    if check:
        built["digest"] = check_corpus("mirror", params, out_root, mirror_files(built))
    return built


def mirror_files(built: dict) -> list[Path]:
    """Every file a `build_demo_mirror` call wrote (dump folders, `latest` feeds, zips)."""
    files: set[Path] = set()
    for dump in built["dumps"].values():
        day = Path(dump).parent
        files |= {p for p in day.iterdir() if p.is_file()}
        files |= {p for p in (day.parent / "latest").iterdir() if p.is_file()}
    files |= {Path(p) for p in built["opus"].values()}
    return sorted(files)
