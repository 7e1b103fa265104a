"""The course's document set: real text, built on this machine, cached under data/ and never committed.

* `postgres-docs`: the PostgreSQL 15 manual from Debian's `postgresql-doc-15` package (PostgreSQL License), about
  10K chunks of at most 1,000 characters, split by section. Needs `apt-get download`, so Debian/Ubuntu only.
* `python-docs`: CPython's own documentation (stdlib docstrings and `pydoc_data.topics`), available everywhere.

`build_corpus()` writes `data/corpus-<name>.jsonl`; `load_corpus()` embeds it into the `embeddings` table,
idempotently: chunk ids are stable, rows already loaded with the same model are skipped.
"""

from __future__ import annotations

import ast
import html
import json
import logging
import re
import shutil
import subprocess
import sysconfig
import tempfile
from typing import Any
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from tqdm.auto import tqdm

from course.settings import get_settings

log = logging.getLogger(__name__)

MAX_CHUNK_CHARS = 1000
MIN_CHUNK_CHARS = 80
_NAMESPACE = uuid.UUID("6f1c3a52-43a4-4e36-9a51-5b0c1d9f2a10")
PG_DOC_PACKAGE = "postgresql-doc-15"


@dataclass
class Chunk:
    content: str
    metadata: dict[str, Any]
    id: str

    def as_dict(self) -> dict:
        return {"id": self.id, "content": self.content, "metadata": self.metadata}


#: Bump when chunking or metadata change: ids change with it, so `load_corpus` replaces the old rows.
CORPUS_VERSION = 2


def _chunk_id(*key: object) -> str:
    """A stable id, so reloading the same corpus finds the rows it already has."""
    return str(uuid.uuid5(_NAMESPACE, "|".join(map(str, (CORPUS_VERSION, *key)))))


# ---------------------------------------------------------------------------------------------------------------------
# Splitting text into chunks
# ---------------------------------------------------------------------------------------------------------------------
def split_text(text: str, limit: int = MAX_CHUNK_CHARS) -> list[str]:
    """Split on paragraph boundaries (then sentences, then words) into pieces of at most `limit` characters."""
    pieces: list[str] = []
    current = ""
    for paragraph in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not paragraph:
            continue
        for part in _split_long(paragraph, limit):
            if current and len(current) + 2 + len(part) > limit:
                pieces.append(current)
                current = part
            else:
                current = f"{current}\n\n{part}" if current else part
    if current:
        pieces.append(current)
    return pieces


def _split_long(paragraph: str, limit: int) -> Iterator[str]:
    if len(paragraph) <= limit:
        yield paragraph
        return
    current = ""
    for unit in re.split(r"(?<=[.!?;:])\s+|\s+", paragraph):
        while len(unit) > limit:  # a single enormous token (a long URL or literal)
            yield unit[:limit]
            unit = unit[limit:]
        if current and len(current) + 1 + len(unit) > limit:
            yield current
            current = unit
        else:
            current = f"{current} {unit}" if current else unit
    if current:
        yield current


# ---------------------------------------------------------------------------------------------------------------------
# The PostgreSQL manual
# ---------------------------------------------------------------------------------------------------------------------
_BLOCK_TAGS = {"p", "pre", "li", "dt", "dd", "tr", "div", "table", "blockquote", "br", "h1", "h2", "h3", "h4", "h5"}
_SKIP_CLASSES = {"navheader", "navfooter", "toc", "footnotes"}
_ADMONITIONS = {"note", "warning", "tip", "caution", "important"}  # their "Note"/"Tip" headings are not sections


class _ManualPageParser(HTMLParser):
    """Collect (section title, text) pairs from one DocBook HTML page of the manual."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page_title = ""
        self.sections: list[tuple[str, list[str]]] = []
        self._stack: list[tuple[str, bool]] = []  # (tag, skipping)
        self._admonition_depth = 0
        self._heading: list[str] | None = None
        self._in_title = False
        self._in_pre = False
        self._buffer: list[str] = []

    @property
    def _skipping(self) -> bool:
        return bool(self._stack) and self._stack[-1][1]

    def handle_starttag(self, tag, attrs):
        classes = set((dict(attrs).get("class") or "").split())
        skipping = self._skipping or tag in {"script", "style"} or bool(classes & _SKIP_CLASSES)
        if tag not in {"br", "img", "hr", "meta", "link", "col"}:
            self._stack.append((tag, skipping))
        if tag == "div" and classes & _ADMONITIONS:
            self._admonition_depth += 1
            self._stack[-1] = ("div!", skipping)  # remember to decrement when this div closes
        if tag == "title":
            self._in_title = True
        if skipping:
            return
        if tag in {"h1", "h2", "h3", "h4"} and "title" in classes and not self._admonition_depth:
            self._flush()
            self._heading = []
            return
        if tag == "pre":
            self._in_pre = True
        if tag in _BLOCK_TAGS:
            self._buffer.append("\n\n" if tag in {"p", "pre", "div", "table", "dt"} else "\n")

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        while self._stack:
            open_tag, _ = self._stack.pop()
            if open_tag == "div!":
                self._admonition_depth -= 1
                open_tag = "div"
            if open_tag == tag:
                break
        if tag in {"h1", "h2", "h3", "h4"} and self._heading is not None:
            title = " ".join("".join(self._heading).split())
            self.sections.append((title, []))
            self._heading = None
        if tag == "pre":
            self._in_pre = False
            self._buffer.append("\n\n")

    def handle_data(self, data):
        if self._in_title:
            self.page_title += data
            return
        if self._skipping:
            return
        if self._heading is not None:
            self._heading.append(data)
            return
        self._buffer.append(data if self._in_pre else re.sub(r"\s+", " ", data))

    def _flush(self) -> None:
        text = "".join(self._buffer)
        self._buffer = []
        if self.sections:
            self.sections[-1][1].append(text)
        elif text.strip():
            self.sections.append((self.page_title.strip(), [text]))

    def close(self):
        super().close()
        self._flush()


def _clean(text: str) -> str:
    lines = [line.rstrip() for line in html.unescape(text).splitlines()]
    text = "\n".join(lines)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def chunks_from_manual_page(path: Path) -> list[Chunk]:
    parser = _ManualPageParser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    title = " ".join(parser.page_title.split())
    chunks = []
    for ordinal, (section, texts) in enumerate(parser.sections):
        body = _clean("".join(texts))
        if len(body) < MIN_CHUNK_CHARS:
            continue
        for part, piece in enumerate(split_text(body)):
            metadata = {
                "source": "postgres-docs",
                # sql, functions, plpgsql, monitoring, ...: filters of every selectivity
                "topic": path.stem.split("-")[0],
                "page": path.name,
                "title": title,
                "section": section or title,
                "language": "en",
                "part": part,
            }
            chunks.append(Chunk(content=piece, metadata=metadata, id=_chunk_id(path.name, ordinal, part)))
    return chunks


def _download_manual(cache: Path) -> Path:
    """Fetch and unpack the Debian package that holds the HTML manual (no installation, no root needed for
    `apt-get download` itself; a fresh machine needs `apt-get update` once, which we try if we are root)."""
    html_dir = cache / "postgresql-doc" / "usr/share/doc/postgresql-doc-15/html"
    if html_dir.is_dir() and any(html_dir.glob("*.html")):
        return html_dir
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise RuntimeError("apt-get/dpkg-deb not found (not a Debian-based system)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        tmp_path.chmod(0o777)  # apt's sandbox user must be able to write the download here

        def download() -> subprocess.CompletedProcess:
            return subprocess.run(
                ["apt-get", "download", PG_DOC_PACKAGE], cwd=tmp, capture_output=True, text=True, timeout=300
            )

        result = download()
        if result.returncode != 0 and _is_root():
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, timeout=600)
            result = download()
        debs = list(tmp_path.glob(f"{PG_DOC_PACKAGE}_*.deb"))
        if result.returncode != 0 or not debs:
            raise RuntimeError(f"apt-get download {PG_DOC_PACKAGE} failed: {result.stderr.strip()[-300:]}")
        target = cache / "postgresql-doc"
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(target)], check=True, timeout=300)
    return html_dir


def _is_root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0


def postgres_manual_chunks(cache: Path, progress: bool = True) -> list[Chunk]:
    # bookindex*.html is the book's alphabetical index: lists of terms, not prose
    pages = sorted(p for p in _download_manual(cache).glob("*.html") if not p.name.startswith("bookindex"))
    chunks: list[Chunk] = []
    for page in tqdm(pages, desc="Chunking the PostgreSQL manual", unit="page", disable=not progress):
        chunks.extend(chunks_from_manual_page(page))
    return chunks


# ---------------------------------------------------------------------------------------------------------------------
# CPython's documentation (fallback that works on every OS)
# ---------------------------------------------------------------------------------------------------------------------
def python_docs_chunks(progress: bool = True) -> list[Chunk]:
    chunks: list[Chunk] = []
    from pydoc_data.topics import topics

    for name, text in sorted(topics.items()):
        for part, piece in enumerate(split_text(_clean(text))):
            meta = {
                "source": "python-docs",
                "topic": "reference",
                "page": "reference",
                "title": name,
                "section": name,
                "language": "en",
                "part": part,
            }
            chunks.append(Chunk(piece, meta, _chunk_id("python-topic", name, part)))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p for p in stdlib.rglob("*.py") if not ({"test", "tests", "idlelib", "site-packages"} & set(p.parts))
    )
    for path in tqdm(files, desc="Reading stdlib docstrings", unit="file", disable=not progress):
        module = ".".join(path.relative_to(stdlib).with_suffix("").parts).removesuffix(".__init__")
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for qualname, doc in _docstrings(tree, module):
            if len(doc) < 200:
                continue
            for part, piece in enumerate(split_text(doc)):
                meta = {
                    "source": "python-docs",
                    "topic": module.split(".")[0],
                    "page": module,
                    "title": module,
                    "section": qualname,
                    "language": "en",
                    "part": part,
                }
                chunks.append(Chunk(piece, meta, _chunk_id("python-doc", qualname, part)))
    return chunks


def _docstrings(tree: ast.Module, module: str) -> Iterator[tuple[str, str]]:
    doc = ast.get_docstring(tree)
    if doc:
        yield module, doc
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            if doc := ast.get_docstring(node):
                yield f"{module}.{node.name}", doc
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not item.name.startswith("_"):
                        if doc := ast.get_docstring(item):
                            yield f"{module}.{node.name}.{item.name}", doc


# ---------------------------------------------------------------------------------------------------------------------
# What the notebooks ask of each corpus
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CorpusGuide:
    """The examples a notebook needs, chosen for one corpus: questions it answers, metadata topics to filter on
    (broad to rare), queries that name exact identifiers. The notebooks take them from `corpus_guide()`, so they
    demonstrate the same things on the fallback corpus as on the manual; tests check every topic exists."""

    name: str
    what: str  # "the PostgreSQL manual"
    questions: tuple[str, ...]  # six questions the corpus answers
    off_topic: tuple[str, ...]  # three it cannot
    filter_topics: tuple[str, ...]  # four `topic` values, from broad to rare (Objective 4's filtered-HNSW trap)
    identifier_query: str  # names exact identifiers: where full-text search helps (Objective 4)
    keyword_queries: tuple[str, ...]  # six short keyword queries that full-text search matches (Objective 4's RRF)
    topic_example: tuple[str, str, str]  # a topic, a query within it, and a new document on it (Objectives 5 and 6)


GUIDES = {
    "postgres-docs": CorpusGuide(
        name="postgres-docs",
        what="the PostgreSQL manual",
        questions=(
            "How do I make a backup of my database?",
            "What does VACUUM do?",
            "How do I create an index?",
            "How do I grant privileges on a table?",
            "What is a foreign key?",
            "How can I store JSON documents?",
        ),
        off_topic=("Recipe for banana bread", "Who won the football world cup?", "How to knit a scarf"),
        filter_topics=("sql", "functions", "plpgsql", "monitoring"),
        identifier_query="pg_stat_activity wait_event",
        keyword_queries=(
            "vacuum full locks the table",
            "create index concurrently",
            "json path operators",
            "streaming replication slots",
            "row level security policy",
            "pl/pgsql exception handling",
        ),
        topic_example=("ddl", "rename a column", "ALTER TABLE … RENAME COLUMN renames a column."),
    ),
    "python-docs": CorpusGuide(
        name="python-docs",
        what="CPython's documentation",
        questions=(
            "How do I run several coroutines at the same time?",
            "How do I turn a Python object into JSON?",
            "How do I write log messages to a file?",
            "How do I compare two sequences of lines?",
            "How do I create a temporary directory?",
            "What does the with statement do?",
        ),
        off_topic=("Recipe for banana bread", "Who won the football world cup?", "How to knit a scarf"),
        filter_topics=("reference", "asyncio", "logging", "json"),
        identifier_query="gather return_exceptions",
        keyword_queries=(
            "json indent",
            "logging level",
            "event loop task",
            "mock patch",
            "unified diff",
            "socket timeout",
        ),
        topic_example=("json", "parse a json string", "json.loads() parses a JSON document into Python objects."),
    ),
}


def corpus_guide(name: str | None = None) -> CorpusGuide:
    """The guide for `name`, or for the corpus this machine uses (the configured one, else the one built)."""
    return GUIDES[name or available_corpus() or "postgres-docs"]


# ---------------------------------------------------------------------------------------------------------------------
# Build, read, load
# ---------------------------------------------------------------------------------------------------------------------
def corpus_path(name: str) -> Path:
    return Path(get_settings().course_data_dir) / f"corpus-{name}.jsonl"


def available_corpus() -> str | None:
    """The name of an already built corpus, preferring the configured one."""
    wanted = get_settings().course_corpus
    names = ["postgres-docs", "python-docs"] if wanted == "auto" else [wanted]
    return next((n for n in names if corpus_path(n).exists()), None)


def build_corpus(name: str | None = None, *, progress: bool = True) -> Path:
    """Build the corpus once (cached in data/). `auto` tries the PostgreSQL manual, then CPython's docs."""
    name = name or get_settings().course_corpus
    if name == "auto":
        existing = available_corpus()
        if existing:
            return corpus_path(existing)
        try:
            return build_corpus("postgres-docs", progress=progress)
        except RuntimeError as exc:
            log.warning("PostgreSQL manual unavailable (%s); using CPython's documentation instead.", exc)
            return build_corpus("python-docs", progress=progress)
    path = corpus_path(name)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if name == "postgres-docs":
        chunks = postgres_manual_chunks(path.parent / "cache", progress=progress)
    elif name == "python-docs":
        chunks = python_docs_chunks(progress=progress)
    else:
        raise ValueError(f"Unknown corpus {name!r}: use postgres-docs or python-docs.")
    _write_jsonl(path, (c.as_dict() for c in chunks))
    return path


def _write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)  # never leave a half-written corpus behind


def read_corpus(name: str | None = None, limit: int | None = None) -> list[dict]:
    """The chunks as dicts {id, content, metadata}; builds the corpus first if needed.

    With a limit (or COURSE_CORPUS_LIMIT) the chunks are an evenly spaced sample across the whole corpus, so a
    quick run still sees every part of the manual rather than its first pages."""
    return _sample(_read_all(name), limit if limit is not None else get_settings().course_corpus_limit)


def _read_all(name: str | None) -> list[dict]:
    with build_corpus(name).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _sample(rows: list[dict], limit: int | None) -> list[dict]:
    if limit is None or limit >= len(rows):
        return rows
    step = len(rows) / limit
    return [rows[int(i * step)] for i in range(limit)]
