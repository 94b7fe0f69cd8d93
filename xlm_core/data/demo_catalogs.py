"""Gettext catalogs as parallel text: the pinned wheels' `.mo` files read in place, English msgid →
translated msgstr, and the demo mirror's OPUS moses zip built from them.

The catalogs come from the wheels in `demo_sources.SOURCES` (Django, Sphinx, wagtail, Trac, pretix),
read straight from the zip files, never installed. A language maps to one locale folder per wheel
(`LOCALE_ALIASES`: zh is `zh_Hans` in Django, `zh_CN` in Sphinx). Tests may pass a `locale_root`, a
`<locale>/LC_MESSAGES/*.mo` tree, instead.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import struct
import zipfile
from pathlib import Path

from xlm_core.data.demo_sources import SOURCES, ensure_demo_sources
from xlm_core.io import atomic_path

__all__ = [
    "DemoMirrorError",
    "build_opus_zip",
    "catalog_pairs",
    "catalog_sources",
    "parse_mo",
    "read_mo",
]

logger = logging.getLogger(__name__)

# Locale folder names a language's catalogs may use in the wheels, in order of preference.
LOCALE_ALIASES = {
    "zh": ("zh_Hans", "zh_CN", "zh"),
    "pt": ("pt", "pt_PT"),
    "nb": ("nb", "nb_NO"),
    "he": ("he", "he_IL"),
}
MO_RE = re.compile(r"/([^/]+)/LC_MESSAGES/[^/]+\.mo$")


class DemoMirrorError(ValueError):
    """The pinned sources hold no man pages or gettext catalogs for a requested language."""


def read_mo(path: Path) -> list[tuple[str, str]]:
    """(msgid, msgstr[0]) pairs of a compiled gettext catalog; header and untranslated entries skipped."""
    return parse_mo(Path(path).read_bytes(), str(path))


def parse_mo(data: bytes, name: str) -> list[tuple[str, str]]:
    """`read_mo` on the bytes of a catalog; `name` identifies it in errors."""
    if len(data) < 20:
        raise DemoMirrorError(f"{name}: too short for a .mo file")
    for order in ("<", ">"):
        if struct.unpack(f"{order}I", data[:4])[0] == 0x950412DE:
            break
    else:
        raise DemoMirrorError(f"{name}: not a gettext .mo file (bad magic {data[:4].hex()})")
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
        f"{locale_root}/{lang}_*/LC_MESSAGES. Pick a language with catalogs there."
    )


def _locale_names(lang: str) -> tuple[str, ...]:
    for key, names in LOCALE_ALIASES.items():
        if lang == key or lang in names:
            return names
    return (lang,)


def _wheel_catalogs(wheel: Path, lang: str) -> list[str]:
    """Members `…/<locale>/LC_MESSAGES/*.mo` of one wheel for `lang`: one locale folder, the first of its
    names (`LOCALE_ALIASES`) the wheel has, else its first regional variant (`he_IL` for he)."""
    with zipfile.ZipFile(wheel) as archive:
        by_folder: dict[str, list[str]] = {}
        for member in archive.namelist():
            if match := MO_RE.search(member):
                by_folder.setdefault(match.group(1), []).append(member)
    names = _locale_names(lang)
    folder = next((n for n in names if n in by_folder), None)
    if folder is None:
        variants = sorted(f for f in by_folder if any(f.startswith((f"{n}_", f"{n}@")) for n in names))
        folder = variants[0] if variants else None
    return sorted(by_folder[folder]) if folder else []


def _catalogs(lang: str, locale_root: Path | None) -> list[tuple[str, bytes]]:
    """(name, bytes) of every catalog of `lang`: the pinned wheels', or those of a locale tree."""
    if locale_root is not None:
        return [(str(p), p.read_bytes()) for p in sorted(_locale_dir(lang, locale_root).glob("*.mo"))]
    out = []
    for wheel in ensure_demo_sources().wheels:
        with zipfile.ZipFile(wheel) as archive:
            out += [(f"{wheel.name}:{m}", archive.read(m)) for m in _wheel_catalogs(wheel, lang)]
    if not out:
        wheels = ", ".join(f"{s.name} {s.version}" for s in SOURCES if s.kind == "pypi")
        raise DemoMirrorError(
            f"no gettext catalogs for language {lang!r} in the pinned wheels ({wheels}); looked for locale "
            f"folders {list(_locale_names(lang))} and their variants. Fix: pick a language they translate, or "
            "pin a wheel that has it in xlm_core/data/demo_sources.py."
        )
    return out


def catalog_sources(lang: str) -> list[str]:
    """`Name version (licence)` of each pinned wheel with catalogs for `lang`."""
    wheels = {p.name: p for p in ensure_demo_sources().wheels}
    return [
        f"{s.name} {s.version} ({s.licence})"
        for s in SOURCES
        if s.file in wheels and _wheel_catalogs(wheels[s.file], lang)
    ]


def catalog_pairs(lang: str, *, locale_root: Path | None = None) -> list[tuple[str, str]]:
    """Distinct (English, `lang`) segment pairs of 3+ English words from every catalog of `lang`, in a
    fixed pseudo-random order. Default: the pinned wheels' catalogs; `locale_root`: a
    `<locale>/LC_MESSAGES/*.mo` tree instead."""
    if locale_root is None:
        return list(_catalog_pairs(lang, None, ensure_demo_sources().wheels))
    return list(_catalog_pairs(lang, Path(locale_root), ()))


@functools.lru_cache(maxsize=32)
def _catalog_pairs(lang: str, locale_root: Path | None, wheels: tuple[Path, ...]) -> tuple[tuple[str, str], ...]:
    seen: set[tuple[str, str]] = set()
    for name, data in _catalogs(lang, locale_root):
        for msgid, msgstr in parse_mo(data, name):
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
    locale_root: Path | None = None,
) -> Path:
    """Write `{out_root}/OPUS-{corpus}/{version}/moses/{l1}-{l2}.txt.zip` from gettext catalogs
    (the pinned wheels', or a `locale_root` tree's)."""
    l1, l2 = sorted(pair.split("-"))
    if "en" not in (l1, l2) or l1 == l2:
        raise DemoMirrorError(f"demo pair {pair!r}: gettext catalogs give English-X pairs only; use en-<lang>")
    other = l2 if l1 == "en" else l1
    pairs = catalog_pairs(other, locale_root=locale_root)[:max_pairs]
    sides = {"en": [en for en, _ in pairs], other: [tr for _, tr in pairs]}
    path = Path(out_root) / f"OPUS-{corpus}" / version / "moses" / f"{l1}-{l2}.txt.zip"
    if locale_root is None:
        packages = catalog_sources(other)
        origin = "the gettext catalogs (.mo) of these pinned PyPI wheels, read from the wheel files:\n"
        origin += "".join(f"- {p}\n" for p in packages)
        licence = (
            "The segments keep the licences of the packages they come from:\n"
            + "".join(f"- {p}\n" for p in packages)
            + "See each wheel's licence file (*.dist-info/) for the full terms.\n"
        )
    else:
        origin = f"the gettext catalogs under {_locale_dir(other, Path(locale_root))}.\n"
        licence = "The catalogs keep the licences of the packages they belong to.\n"
    readme = (
        f"{corpus} {version}, {l1}-{l2}: {len(pairs)} sentence pairs.\n\n"
        "Offline demo mirror (xlm_core.data.demo_mirror), not OPUS: distinct English message ids of 3+ words\n"
        f"and their {other} translations, from {origin}"
    )
    members = [
        (f"{corpus}.{l1}-{l2}.{l1}", "".join(line + "\n" for line in sides[l1])),
        (f"{corpus}.{l1}-{l2}.{l2}", "".join(line + "\n" for line in sides[l2])),
        ("README", readme),
        ("LICENSE", licence),
    ]
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in members:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, text.encode("utf-8"))
    logger.info("demo OPUS zip %s: %d pairs", path, len(pairs))
    return path
