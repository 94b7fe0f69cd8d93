"""A man(7) roff reader that turns a manual page into a Wikipedia-style article (wikitext).

Only what the demo mirror needs: the `man` macro package (not mdoc), fonts as bold/italic,
`.TP`/`.IP` items as an options wikitable, `name(1)` references as links, the NAME section
as the lead sentence; no-fill blocks, tbl tables and macro definitions are dropped.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ManPage", "read_manpage", "split_page_name"]

GLYPHS = {
    "em": "—",
    "en": "–",
    "bu": "•",
    "aq": "'",
    "dq": '"',
    "lq": "“",
    "rq": "”",
    "oq": "‘",
    "cq": "’",
    "co": "©",
    "rg": "®",
    "tm": "™",
    "mu": "×",
    "de": "°",
    "ti": "~",
    "ha": "^",
    "ga": "`",
    "rs": "\\",
    "at": "@",
    "hy": "-",
    "ra": "→",
    "la": "←",
    "<=": "≤",
    ">=": "≥",
    "!=": "≠",
    "+-": "±",
    "sh": "#",
    "Do": "$",
    "sl": "/",
    "fm": "′",
    "pl": "+",
    "mi": "−",
    "eq": "=",
    "ba": "|",
    "br": "|",
    "lB": "[",
    "rB": "]",
    "lC": "{",
    "rC": "}",
    "Fo": "«",
    "Fc": "»",
    "fo": "‹",
    "fc": "›",
    "dg": "†",
    "ss": "ß",
}
STRINGS = {
    "Aq": "'",
    "C'": "'",
    "C`": "'",
    'L"': "“",
    'R"': "”",
    "lq": "“",
    "rq": "”",
    "R": "®",
    "Tm": "™",
    "-": "—",
    "PI": "π",
    "Ae": "Æ",
}
SIMPLE = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "'": "'", "`": "`", ".": ".", "_": "_"}
ESCAPE_RE = re.compile(
    r"""\\(?:f(?:\[(?P<font_long>[^\]]*)\]|\((?P<font2>..)|(?P<font1>.))
    |\((?P<glyph2>..)|\[(?P<glyph_long>[^\]]*)\]
    |\*(?:\[(?P<str_long>[^\]]*)\]|\((?P<str2>..)|(?P<str1>.))
    |s[+-]?\d|s\([+-]?\d\d|s\[[^\]]*\]|[hvwbDlLNoXZRx]'[^']*'|[nkgm](?:\[[^\]]*\]|\(..|.)
    |(?P<other>.))""",
    re.X,
)
LINK_RE = re.compile(r"\\f[BI]([A-Za-z0-9_.+:-]+)\\f[RP]\s*\((\d[a-z]*)\)")
ALTERNATING = {
    "BR": "BR",
    "RB": "RB",
    "BI": "BI",
    "IB": "IB",
    "IR": "IR",
    "RI": "RI",
    "B": "B",
    "I": "I",
    "SB": "B",
    "SM": "R",
}
PARAGRAPH = {"PP", "P", "LP", "sp", "HP", "RS", "RE", "in"}
SKIP_SECTIONS = {"SYNOPSIS", "SYNTAX", "RÉSUMÉ", "ÜBERSICHT", "SINOPSIS"}
PAGE_FILE_RE = re.compile(r"(.+)\.(\d[a-z]*)$")  # name.section, as man(1) names its files
SEE_ALSO = {"SEE ALSO", "VOIR AUSSI", "SIEHE AUCH", "VÉASE TAMBIÉN", "VEA TAMBIÉN"}


def _args(text: str) -> list[str]:
    found = re.findall(r'"((?:[^"]|"")*)"?|((?:\\.|\S)+)', text)
    return [quoted.replace('""', '"') if quoted else bare for quoted, bare in found]


class _Inline:
    """Converts roff text with font escapes into wikitext; the font persists across lines."""

    def __init__(self) -> None:
        self.font = "R"

    def _switch(self, font: str) -> str:
        font = {"3": "B", "CB": "B", "2": "I", "BI": "I", "CI": "I"}.get(font, font)
        font = font if font in ("B", "I") else "R"
        marks = {"B": "'''", "I": "''", "R": ""}
        out = marks[self.font] + marks[font] if font != self.font else ""
        self.font = font
        return out

    def close(self) -> str:
        return self._switch("R")

    def convert(self, text: str) -> str:
        text = LINK_RE.sub(lambda m: f"\x01{m.group(1)}\x02({m.group(2)})", text)
        out, pos = [], 0
        for match in ESCAPE_RE.finditer(text):
            out.append(_literal(text[pos : match.start()]))
            pos = match.end()
            groups = match.groupdict()
            font = groups["font_long"] or groups["font2"] or groups["font1"]
            if font is not None or groups["font_long"] == "":
                out.append(self._switch(font or "R"))
            elif (glyph := groups["glyph2"] or groups["glyph_long"]) is not None:
                out.append(_literal(GLYPHS.get(glyph, "")))
            elif (name := groups["str_long"] or groups["str2"] or groups["str1"]) is not None:
                out.append(_literal(STRINGS.get(name, "")))
            elif groups["other"] is not None:
                out.append(_literal(SIMPLE.get(groups["other"], "")))
        out.append(_literal(text[pos:]))
        return "".join(out).replace("\x01", "[[").replace("\x02", "]]")


def _literal(text: str) -> str:
    """Plain text made inert in wikitext; WikiExtractor turns the entities back into characters."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("''", "'&#39;").replace("[[", "[&#91;").replace("{{", "{&#123;").replace("|", "&#124;")


@dataclass
class ManPage:
    name: str
    lang: str
    section: str = "1"
    package: str = ""
    date: str = ""
    alias_of: str | None = None
    lead: str = ""
    sections: list[tuple[str, list[tuple[str, str] | str]]] = field(default_factory=list)

    def prose_words(self) -> int:
        return sum(len(block.split()) for _, blocks in self.sections for block in blocks if isinstance(block, str))

    def is_article(self) -> bool:
        return bool(self.lead) and self.prose_words() >= 30

    def wikitext(self) -> str:
        source = ", ".join(part for part in (self.package, self.date) if part)
        lines = ["{{Infobox software", f"| name = {self.name}"]
        if self.package:
            lines.append(f"| developer = {self.package}")
        lines += [
            "| operating system = [[Linux]]",
            "| genre = [[Command-line interface|Command-line]] utility",
            "}}",
            f"{self.lead}<ref>Manual page {self.name}({self.section}){', ' + source if source else ''}.</ref>",
            "",
        ]
        for heading, blocks in self.sections:
            lines += [f"== {heading} ==", ""]
            table: list[tuple[str, str]] = []
            for block in [*blocks, ""]:
                if isinstance(block, tuple):
                    table.append(block)
                    continue
                if table:
                    lines.append('{| class="wikitable"')
                    lines.append("! Option !! Description")
                    for term, text in table:
                        lines += ["|-", f"| {term} || {text}"]
                    lines += ["|}", ""]
                    table = []
                if block and heading.upper() in SEE_ALSO:
                    lines += [f"* {item.strip(' .,')}" for item in block.split(", ") if item.strip(" .,")] + [""]
                elif block:
                    lines += [block, ""]
        lines += ["== References ==", "<references />", "", "[[Category:Unix software]]"]
        return "\n".join(lines)


def _lead(name: str, raw: str, inline: _Inline) -> str:
    parts = re.split(r"\s+\\?[-–—]\s+|\s+\\\(em\s+", raw, maxsplit=1)
    if len(parts) != 2:
        return ""
    description = inline.convert(parts[1].strip()) + inline.close()
    names = [n.strip() for n in inline.convert(parts[0]).split(",") if n.strip()]
    inline.close()
    bold = ", ".join(f"'''{n}'''" for n in names) or f"'''{name}'''"
    return f"{bold} – {description.rstrip('.')}."


def split_page_name(file_name: str) -> tuple[str, str]:
    """`("printf", "3")` for `printf.3.gz` or `printf.3`; the section is "" when the name has none."""
    match = PAGE_FILE_RE.match(file_name.removesuffix(".gz"))
    return (match.group(1), match.group(2)) if match else (file_name.removesuffix(".gz"), "")


def read_manpage(path: Path, *, lang: str) -> ManPage:
    """Parse a gzipped man(7) page; `alias_of` is set for `.so` pages, nothing else for mdoc pages."""
    name, section = split_page_name(Path(path).name)
    text = gzip.decompress(Path(path).read_bytes()).decode("utf-8", errors="replace")
    page = ManPage(name=name, lang=lang, section=section or "1")
    lines = re.sub(r"\\\n", "", text).split("\n")
    first = next((line for line in lines if line.strip() and not line.startswith(('.\\"', "'\\\""))), "")
    if first.startswith(".so "):
        page.alias_of = split_page_name(Path(first.split()[1]).name)[0]
        return page
    if first.startswith((".Dd", ".Dt")):
        return page  # mdoc pages are not handled; no article
    inline = _Inline()
    heading, blocks = "", []
    current: list[str] = []
    term: str | None = None
    awaiting: str | None = None  # "term" after .TP, "heading" after an empty .SH
    skip_until: str | None = None
    nofill = False

    def flush() -> None:
        nonlocal current, term
        body = " ".join(" ".join(current).split()) + inline.close()
        body = body.strip()
        if term is not None:
            if body or term:
                blocks.append((term, body))
        elif body:
            blocks.append(body)
        current, term = [], None

    def end_section() -> None:
        nonlocal blocks
        flush()
        upper = heading.upper()
        if not page.lead and not page.sections and blocks and isinstance(blocks[0], str):
            page.lead = _lead(name, raw_name, _Inline())
        elif heading and upper not in SKIP_SECTIONS and blocks:
            page.sections.append((heading[:1].upper() + heading[1:].lower(), blocks))
        blocks = []

    raw_name = ""
    for line in lines:
        if skip_until is not None:
            if line.startswith(skip_until):
                skip_until = None
            continue
        line = re.sub(r'(?<!\\)\\".*', "", line)
        if line.startswith((".", "'")):
            request, _, rest = line[1:].strip().partition(" ")
            args = _args(rest)
            if request == "TH":
                page.package = inline.convert(args[3]) if len(args) > 3 else ""
                page.date = inline.convert(args[2]) if len(args) > 2 else ""
                inline.close()
            elif request in ("SH", "SS"):
                if request == "SH":
                    end_section()
                else:
                    flush()
                title = inline.convert(" ".join(args)) + inline.close()
                title = re.sub(r"'{2,}", "", title).strip()
                if request == "SH":
                    heading, awaiting = title, (None if title else "heading")
                elif title:
                    blocks.append(f"=== {title[:1].upper() + title[1:]} ===")
            elif request in ("TP", "TQ"):
                flush()
                awaiting = "term"
            elif request == "IP":
                flush()
                if args and args[0] not in ("\\(bu", "\\[bu]", "-", "*", "\\-", "\\(em", "o", "\\(en"):
                    term = inline.convert(args[0]) + inline.close()
            elif request in PARAGRAPH or (request == "br" and term is None):
                flush()
            elif request in ("nf", "EX"):
                flush()
                nofill = True
            elif request in ("fi", "EE"):
                nofill = False
            elif request == "TS":
                skip_until = ".TE"
            elif request in ("de", "ig", "am", "de1"):
                skip_until = ".."
            elif request in ALTERNATING and rest.strip():
                fonts = ALTERNATING[request]
                if len(fonts) == 1:  # .B/.I: one font, arguments joined by spaces
                    line = f"\\f{fonts}{' '.join(args)}\\fR"
                else:  # .BR etc.: fonts alternate between arguments, no spaces
                    line = "".join(f"\\f{fonts[i % 2]}{arg}" for i, arg in enumerate(args)) + "\\fR"
                request = ""
            elif request in ("UR", "MT") and args:
                current.append(_literal(args[0]))
            if request != "":
                continue
        if nofill or not line.strip():
            if not line.strip() and not nofill:
                flush()
            continue
        if awaiting == "heading":
            heading, awaiting = inline.convert(line).strip() + inline.close(), None
            continue
        if awaiting == "term":
            term, awaiting = inline.convert(line) + inline.close(), None
            continue
        if not page.lead and not page.sections and not blocks and not current:
            raw_name = line
        elif not page.lead and not page.sections and not blocks:
            raw_name += " " + line
        current.append(inline.convert(line))
    end_section()
    return page
