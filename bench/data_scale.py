"""Time and peak memory of the whole data path at three input sizes, ours against XLM's original toolchain.

Input: a MediaWiki `pages-articles.xml.bz2` dump resampled from the demo's real one (the pinned English
man pages as wikitext, `demo_mirror.build_wikipedia_dump`) up to each size, counted in MB of
uncompressed XML. Article pages are drawn at random; every prose paragraph of a drawn page is rebuilt
from prose sentences drawn from the whole corpus (at least two), so lines stay distinct and the
cleaning's exact deduplication does not collapse the larger inputs. Tables, headings and lists are
kept as they are; they repeat, as boilerplate does in a real dump.

Each stage runs in a fresh subprocess (`--run-stage`); its time is taken inside the subprocess
(imports excluded), its peak memory two ways: the largest single process (`wait4`'s `ru_maxrss`, over
the stage process and the descendants it waited for) and the whole process tree (PSS summed over the
stage's live descendants, sampled every 0.2 s; pool workers share pages, so RSS would count them twice).

- ours: `wikipedia.extract`, `clean_files` (configs/demo.yaml's cleaning), `tokenize_file`,
  `sample_for_bpe` + `learn_bpe`, `apply_bpe`, `get_vocab` + `Dictionary.from_vocab`, `binarize`;
- original (XLM's way): WikiExtractor `-o -` piped through `sed`/`grep` (get-data-wiki.sh), no cleaning,
  sacremoses line by line in one process, `fast learnbpe` on the whole tokenized text, `fast applybpe`,
  `fast getvocab`, a pure-Python indexer and `torch.save`.

Throughput is MB of each stage's own input per second (ours tokenizes the cleaned text, the original
the extracted text); overall, MB of dump XML per second of all stages. The last line is
`cost_exponent=<slope>`: the least-squares slope of log(our total seconds) over log(size).

    .venv/bin/python bench/data_scale.py [--sizes-mb 32,128,512] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from xlm_core.config import load_config
from xlm_core.config.cleaning import resolve_filters
from xlm_core.data import bpe, wikipedia
from xlm_core.data.binarize import binarize
from xlm_core.data.clean import Segment, clean_files
from xlm_core.data.demo_mirror import build_wikipedia_dump
from xlm_core.data.dictionary import NUM_SPECIALS, UNK_INDEX, Dictionary
from xlm_core.data.tokenize import tokenize_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preprocess import xlm_lowercase_and_remove_accent  # noqa: E402  (bench/ is not a package)

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("extract", "clean", "tokenize", "learn-bpe", "apply-bpe", "dictionary", "binarize")
_PAGE = re.compile(r"  <page>\n.*?  </page>\n", re.S)
_TEXT = re.compile(r"(<text [^>]*>)(.*?)(</text>)", re.S)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z'\[(])")
_MARKUP_START = ("{", "|", "!", "=", "*", "#", ":", ";", "}", "&lt;", "[[Category")


# ---- input -------------------------------------------------------------------------------------------


def _is_prose(line: str) -> bool:
    return len(line.split()) >= 4 and not line.startswith(_MARKUP_START)


def _balanced(sentence: str) -> bool:
    return (
        sentence.count("''") % 2 == 0
        and sentence.count("[[") == sentence.count("]]")
        and sentence.count("{{") == sentence.count("}}")
        and sentence.count("&lt;ref") == sentence.count("&lt;/ref&gt;")
    )


def base_dump(cache: Path) -> tuple[str, list[str]]:
    """The demo's real English dump as (header XML, article page XMLs); built once under `cache`."""
    path = build_wikipedia_dump("en", "20240101", cache, max_pages=100_000)
    xml = bz2.decompress(path.read_bytes()).decode("utf-8")
    pages = [p for p in _PAGE.findall(xml) if "<ns>0</ns>" in p and "<redirect" not in p]
    return xml[: xml.index("  <page>")], pages


def write_dump(header: str, pages: list[str], out: Path, size_bytes: int, seed: int) -> int:
    """Resample `pages` into a bz2 dump of at least `size_bytes` of XML; returns the XML bytes written."""
    rng = random.Random(seed)
    sentences = [
        s
        for page in pages
        for line in _TEXT.search(page).group(2).split("\n")
        if _is_prose(line)
        for s in _SENTENCE_END.split(line)
        if len(s.split()) >= 3 and _balanced(s)
    ]
    written = 0
    with bz2.open(out, "wb", compresslevel=9) as handle:
        data = header.encode("utf-8")
        handle.write(data)
        written += len(data)
        page_id = 11
        while written < size_bytes:
            page = rng.choice(pages)
            match = _TEXT.search(page)
            opening, body, closing = match.groups()
            lines = [
                " ".join(rng.choices(sentences, k=max(2, len(_SENTENCE_END.split(line))))) if _is_prose(line) else line
                for line in body.split("\n")
            ]
            title = re.search(r"<title>(.*?)</title>", page).group(1)
            new = page[: match.start()] + opening + "\n".join(lines) + closing + page[match.end() :]
            new = new.replace(f"<title>{title}</title>", f"<title>{title} {page_id}</title>", 1)
            new = re.sub(r"<id>\d+</id>", f"<id>{page_id}</id>", new, count=1)
            data = new.encode("utf-8")
            handle.write(data)
            written += len(data)
            page_id += 1
        handle.write(b"</mediawiki>\n")
    return written + len(b"</mediawiki>\n")


# ---- stages (run inside the stage subprocess) --------------------------------------------------------


def _fast(*args: str, stdout: Path | None = None) -> None:
    with open(stdout, "wb") if stdout else open(os.devnull, "wb") as out:
        subprocess.run([str(bpe.fast_binary()), *args], check=True, stdout=out, stderr=subprocess.DEVNULL)


def ours(stage: str, work: Path, opts: dict) -> dict:
    cfg = load_config(ROOT / "configs" / "demo.yaml")
    w = work / "ours"
    if stage == "extract":
        return wikipedia.extract(
            work / "dump.xml.bz2", w / "text.en", processes=cfg.data.wikipedia.processes, articles_path=w / "text.docs"
        )
    if stage == "clean":
        segments = [Segment("wikipedia-en", resolve_filters(cfg.cleaning, lang="en"))]
        stats = clean_files(
            [w / "text.en"],
            [w / "clean.en"],
            langs=["en"],
            segments=segments,
            workers=cfg.cleaning.workers,
            articles_in=w / "text.docs",
            articles_out=w / "clean.docs",
        )
        return {k: v for k, v in stats.items() if k in ("lines", "kept", "removed_duplicate", "removed_lid")}
    if stage == "tokenize":
        tokenize_file(
            w / "clean.en",
            w / "tok.en",
            lang="en",
            lowercase=cfg.tokenization.lowercase_for("en"),
            workers=cfg.tokenization.workers,
        )
        return {}
    if stage == "learn-bpe":
        drawn = bpe.sample_for_bpe(
            {"en": w / "tok.en"}, w / "sample.en", sample_size=opts["bpe_sample"], alpha=0.5, seed=0
        )
        bpe.learn_bpe(w / "sample.en", w / "codes", opts["codes"])
        return {"sample_lines": drawn["en"]}
    if stage == "apply-bpe":
        bpe.apply_bpe(w / "tok.en", w / "bpe.en", w / "codes", workers=cfg.tokenization.workers)
        return {}
    if stage == "dictionary":
        bpe.get_vocab([w / "bpe.en"], w / "vocab")
        Dictionary.from_vocab(w / "vocab").write(w / "dict.txt")
        return {}
    stats = binarize(w / "bpe.en", Dictionary.read(w / "dict.txt"), w / "train.en")
    return {"sentences": stats.get("sentences"), "tokens": stats.get("tokens")}


def original(stage: str, work: Path, opts: dict) -> dict:
    w = work / "orig"
    if stage == "extract":
        command = (
            f'"{sys.executable}" -m wikiextractor.WikiExtractor "{work / "dump.xml.bz2"}" --processes 2 -q '
            f'--html-safe "" -o - | sed "/^\\s*$/d" | grep -v "^<doc id=" | grep -v "</doc>$" > "{w / "text.en"}"'
        )
        subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True)
    elif stage == "tokenize":
        from sacremoses import MosesPunctNormalizer, MosesTokenizer

        normalizer = MosesPunctNormalizer("en", pre_replace_unicode_punct=True, post_remove_control_chars=True)
        tokenizer = MosesTokenizer("en")
        with open(w / "text.en", encoding="utf-8") as src, open(w / "tok.en", "w", encoding="utf-8") as dst:
            for line in src:
                text = tokenizer.tokenize(normalizer.normalize(line.rstrip("\n")), escape=False, return_str=True)
                dst.write(xlm_lowercase_and_remove_accent(text) + "\n")
    elif stage == "learn-bpe":
        # as many merges as ours learned: on a tiny input fastBPE asked for more writes codes applybpe aborts on
        merges = min(opts["codes"], bpe.count_lines(work / "ours" / "codes"))
        _fast("learnbpe", str(merges), str(w / "tok.en"), stdout=w / "codes")
    elif stage == "apply-bpe":
        _fast("applybpe", str(w / "bpe.en"), str(w / "tok.en"), str(w / "codes"))
    elif stage == "dictionary":
        _fast("getvocab", str(w / "bpe.en"), stdout=w / "vocab")
    elif stage == "binarize":
        python_binarize(w / "bpe.en", Dictionary.from_vocab(w / "vocab"), w / "train.en.pth")
    return {}


def python_binarize(text: Path, dico: Dictionary, out: Path) -> None:
    """Index line by line into Python lists, then one array each and `torch.save`: the XLM-era way."""
    import torch

    ids, bounds, unknown = [], [], {}
    lookup = dico.word2id
    with open(text, encoding="utf-8") as handle:
        for line in handle:
            start = len(ids)
            for token in line.split():
                index = lookup.get(token, UNK_INDEX)
                if index == UNK_INDEX:
                    unknown[token] = unknown.get(token, 0) + 1
                elif index < NUM_SPECIALS:
                    continue
                ids.append(index)
            bounds.append((start, len(ids)))
            ids.append(1)
    torch.save(
        {
            "dico": dico.words,
            "positions": np.array(bounds, dtype=np.int64),
            "sentences": np.array(ids, dtype=np.uint16),
            "unk_words": unknown,
        },
        out,
        pickle_protocol=4,
    )


# ---- measuring ---------------------------------------------------------------------------------------


def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# A stage forked straight from this process would report this process's RSS as its own `ru_maxrss` (Linux
# carries the parent's high-water mark across fork and exec), so stages start from a small launcher.
_LAUNCHER = r"""
import json, os, sys
for line in sys.stdin:
    argv = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.dup2(2, 1)
        os.execv(argv[0], argv)
    print(pid, flush=True)
    _, status, usage = os.wait4(pid, 0)
    print(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_maxrss]), flush=True)
"""


class Launcher:
    """Runs each stage in a fresh process; its seconds, peak single-process RSS and peak tree PSS (MB)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _LAUNCHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def run(self, side: str, stage: str, work: Path, opts: dict) -> dict:
        result_path = work / f".{side}-{stage}.json"
        spec = json.dumps({"side": side, "stage": stage, "work": str(work), "opts": opts, "out": str(result_path)})
        self.proc.stdin.write(json.dumps([sys.executable, __file__, "--run-stage", spec]) + "\n")
        self.proc.stdin.flush()
        pid = int(self.proc.stdout.readline())
        peak, done = [0], threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                peak[0] = max(peak[0], sum(_pss_kib(p) for p in _descendants(pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code, maxrss_kib = json.loads(self.proc.stdout.readline())
        done.set()
        sampler.join()
        if code != 0:
            raise RuntimeError(f"{side} {stage} failed (exit {code})")
        result = json.loads(result_path.read_text())
        return {**result, "rss_mb": maxrss_kib / 1024, "tree_mb": max(peak[0], maxrss_kib) / 1024}

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def stage_input(side: str, stage: str, work: Path) -> Path:
    w = work / side
    clean = "clean.en" if side == "ours" else "text.en"
    return {
        "extract": work / "dump.xml.bz2",
        "clean": w / "text.en",
        "tokenize": w / clean,
        "learn-bpe": w / "tok.en",
        "apply-bpe": w / "tok.en",
        "dictionary": w / "bpe.en",
        "binarize": w / "bpe.en",
    }[stage]


def _cells(r: dict) -> str:
    return f"{r['seconds']:8.2f}{r['in_mb'] / r['seconds']:8.2f}{r['rss_mb']:8.0f}{r['tree_mb']:8.0f}"


def slope(sizes: list[float], values: list[float]) -> float:
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="32,128,512", help="dump sizes, MB of uncompressed XML")
    parser.add_argument("--workdir", type=Path, help="where inputs and outputs go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep every size's files (default: delete after use)")
    parser.add_argument("--codes", type=int, default=10_000, help="BPE merges, both toolchains")
    parser.add_argument("--bpe-sample", type=int, default=200_000, help="lines of our BPE sample (demo.yaml's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-stage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_stage:
        spec = json.loads(args.run_stage)
        start = time.perf_counter()
        info = (ours if spec["side"] == "ours" else original)(spec["stage"], Path(spec["work"]), spec["opts"])
        Path(spec["out"]).write_text(json.dumps({"seconds": time.perf_counter() - start, "info": info}, default=str))
        return
    sizes = [float(s) for s in args.sizes_mb.split(",")]
    if len(sizes) < 2:
        raise ValueError("--sizes-mb needs at least two sizes, e.g. 4,16,64")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-data-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    opts = {"codes": args.codes, "bpe_sample": args.bpe_sample}
    launcher = Launcher()
    header, pages = base_dump(root / "base")
    print(
        f"machine: {os.uname().machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(f"base: {len(pages)} real man page articles; codes {args.codes}, our BPE sample {args.bpe_sample} lines")
    results: dict[float, dict[str, dict[str, dict]]] = {}
    for size in sizes:
        work = root / f"size-{size:g}"
        for side in ("ours", "orig"):
            (work / side).mkdir(parents=True, exist_ok=True)
        xml_bytes = write_dump(header, pages, work / "dump.xml.bz2", int(size * 1e6), args.seed)
        results[size] = {"ours": {}, "orig": {}}
        print(
            f"\n== {size:g} MB: {xml_bytes / 1e6:.1f} MB XML, {(work / 'dump.xml.bz2').stat().st_size / 1e6:.1f} MB bz2"
        )
        print(
            f"{'stage':<11}{'ours s':>8}{'MB/s':>8}{'RSS MB':>8}{'tree MB':>8}  |"
            f"{'orig s':>8}{'MB/s':>8}{'RSS MB':>8}{'tree MB':>8}  ratio"
        )
        for stage in STAGES:
            row = {}
            for side in ("ours", "orig"):
                if side == "orig" and stage == "clean":
                    continue  # XLM has no cleaning step
                in_mb = (xml_bytes if stage == "extract" else stage_input(side, stage, work).stat().st_size) / 1e6
                row[side] = {**launcher.run(side, stage, work, opts), "in_mb": in_mb}
                results[size][side][stage] = row[side]
            o = row["ours"]
            line = f"{stage:<11}" + _cells(o) + "  |"
            if "orig" in row:
                r = row["orig"]
                line += _cells(r) + f"  {(o['in_mb'] / o['seconds']) / (r['in_mb'] / r['seconds']):.2f}"
            else:
                line += f"{'-':>8}" * 4 + "  -"
            print(line + (f"  {o['info']}" if o["info"] else ""))
        total = {side: sum(r["seconds"] for r in results[size][side].values()) for side in ("ours", "orig")}
        print(
            f"overall: ours {total['ours']:.1f} s ({size / total['ours']:.2f} MB/s); "
            f"original {total['orig']:.1f} s ({size / total['orig']:.2f} MB/s); "
            f"ratio {total['orig'] / total['ours']:.2f}"
        )
        if not args.keep:
            shutil.rmtree(work)
    launcher.close()
    if not args.keep and args.workdir is None:
        shutil.rmtree(root)

    small, large = sizes[0], sizes[-1]
    print(
        f"\n== scaling over {', '.join(f'{s:g}' for s in sizes)} MB (exponent of time; peak tree MB, largest/smallest)"
    )
    for stage in STAGES:
        times = [results[s]["ours"][stage]["seconds"] for s in sizes]
        trees = [results[s]["ours"][stage]["tree_mb"] for s in sizes]
        print(
            f"{stage:<11} exponent {slope(sizes, times):5.2f}  "
            f"peak {' / '.join(f'{t:.0f}' for t in trees)} MB  x{trees[-1] / trees[0]:.2f}"
        )
    totals = [sum(r["seconds"] for r in results[s]["ours"].values()) for s in sizes]
    exponent = slope(sizes, totals)
    print(f"overall     exponent {exponent:5.2f}")
    peak = [max(r["tree_mb"] for r in results[s]["ours"].values()) for s in sizes]
    ours_large = sum(r["seconds"] for r in results[large]["ours"].values())
    orig_large = sum(r["seconds"] for r in results[large]["orig"].values())
    print(f"target exponent <= 1.1: {exponent:.2f} {'holds' if exponent <= 1.1 else 'FAILS'}")
    growth = peak[-1] / peak[0]
    print(
        f"target peak RSS flat within 20% ({small:g} -> {large:g} MB): {peak[0]:.0f} -> {peak[-1]:.0f} MB, "
        f"x{growth:.2f} {'holds' if growth <= 1.2 else 'FAILS'}"
    )
    speedup = orig_large / ours_large
    print(f"target >= 3x the original at {large:g} MB: {speedup:.2f}x {'holds' if speedup >= 3 else 'FAILS'}")
    print(f"cost_exponent={exponent:.3f}")


if __name__ == "__main__":
    main()
