"""Chunked NLP snapshot of transcripts (the memory-optimisation document for transcripts).

A *snapshot* of a text is the entities and keywords found in it, with counts.
The document's memory-efficient NLP processor works in chunks of
``chunk_size`` characters that overlap by ``overlap`` characters; this module
does the same, in memory bounded independently of the input's size:

- the input is read as a stream: WebVTT cue by cue (:class:`~reference_app.vtt.VTTReader`),
  plain text in blocks, and files over the streaming threshold through a
  memory-mapped reader (:func:`mmap_blocks`) that never holds more than one
  block;
- each chunk gets its own entities and keywords (:class:`ChunkSnapshot`), and
  running totals are kept in :class:`BoundedCounter`\\ s, which hold at most a
  fixed number of distinct keys however many the input has (the totals'
  top entries are exact while the text has fewer distinct keys than the
  bound, approximate past it: the Space-Saving algorithm).

Keywords come from YAKE (the ``yake`` package: statistical, unsupervised,
ships its stop-word lists, downloads nothing). Entities come from a documented
rule-based extractor (:func:`find_entities`): no model small enough to ship in
a package and work offline was available here (spaCy's English models are
not on the package index). The rules, by label:

========= ==================================================================
NAME      capitalised words in a row, not only the first word of a sentence
          (``Acme Corporation``, ``John Smith``); a lone capitalised word at
          a sentence start is not a name
DATE      month names with a day or year, weekdays, ISO dates, ``today``,
          ``tomorrow``, ``yesterday``
TIME      ``10:30``, ``3 pm``, ``noon``, ``midnight``
MONEY     ``$12``, ``12.50 dollars``, ``€5``, ``40 euros``
PERCENT   ``12 %``, ``12 percent``
NUMBER    other numbers (``1,200``, ``3.5``)
EMAIL     addresses
URL       ``http(s)://`` and ``www.`` addresses
========= ==================================================================

Transcripts from pocketsphinx are lower case, so for them only DATE, TIME and
number words carry entities; subtitles written by people carry all kinds.

Example::

    snap = snapshot_text("John Smith met Acme Corporation on March 3rd at 10:30.")
    snap.top_entities(3)   # [("NAME", "John Smith", 1), ("NAME", "Acme Corporation", 1), ...]
    for chunk in iter_chunks("talk.vtt", chunk_size=500, overlap=100):
        print(chunk.index, chunk.keywords[:3], chunk.totals.top_keywords(3))
"""

from __future__ import annotations

import gc
import mmap
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

MB = 1_000_000
DEFAULT_CHUNK_SIZE = 500
DEFAULT_OVERLAP = 100
DEFAULT_TOTALS_CAPACITY = 5000


class NLPError(ValueError):
    """Bad input to the snapshot: unreadable file, impossible chunking."""


# -- file-size strategy (the document's table) ----------------------------------------


@dataclass(frozen=True)
class Strategy:
    """How a file of a given size is read, and the memory target for it."""

    name: str
    max_file_mb: float | None  # upper bound of the size class (None: no bound)
    memory_target_mb: int  # the document's "memory usage" column
    reader: str  # "whole", "blocks" or "mmap"
    gc_every_chunks: int | None  # the document's "aggressive GC" for the largest class


STRATEGIES = (
    Strategy("standard loading", 1, 100, "whole", None),
    Strategy("chunked processing", 10, 200, "blocks", None),
    Strategy("streaming + chunks", 50, 300, "blocks", None),
    Strategy("full streaming", None, 500, "mmap", 200),
)


def choose_strategy(size_bytes: int) -> Strategy:
    """The document's table: < 1 MB standard, 1-10 MB chunked, 10-50 MB streaming
    with chunks, > 50 MB full streaming (memory-mapped, periodic gc)."""
    for strategy in STRATEGIES:
        if strategy.max_file_mb is None or size_bytes < strategy.max_file_mb * MB:
            return strategy
    raise AssertionError("unreachable: the last strategy has no bound")


# -- bounded running totals -------------------------------------------------------------


class BoundedCounter:
    """Counts at most ``capacity`` distinct keys (Space-Saving algorithm).

    A new key arriving when the counter is full replaces the key with the
    smallest count and inherits that count (its ``error``), so a frequent key
    is never lost and memory never exceeds ``capacity`` entries. Counts are
    exact while fewer than ``capacity`` distinct keys were seen
    (:attr:`exact`).
    """

    def __init__(self, capacity: int = DEFAULT_TOTALS_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._counts: dict[Any, int] = {}
        self._errors: dict[Any, int] = {}
        self.replaced = 0

    def add(self, key: Any, count: int = 1) -> None:
        if key in self._counts:
            self._counts[key] += count
            return
        if len(self._counts) < self.capacity:
            self._counts[key] = count
            return
        victim = min(self._counts, key=self._counts.__getitem__)
        floor = self._counts.pop(victim)
        self._errors.pop(victim, None)
        self._counts[key] = floor + count
        self._errors[key] = floor
        self.replaced += 1

    @property
    def exact(self) -> bool:
        return self.replaced == 0

    def most_common(self, n: int | None = None) -> list[tuple[Any, int]]:
        items = sorted(self._counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
        return items if n is None else items[:n]

    def __len__(self) -> int:
        return len(self._counts)

    def __getitem__(self, key: Any) -> int:
        return self._counts.get(key, 0)


# -- extraction -------------------------------------------------------------------------

_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_WEEKDAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_ENTITY_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("EMAIL", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("URL", re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)]")),
    (
        "MONEY",
        re.compile(
            rf"[$€£]\s?(?:{_NUM})|\b(?:{_NUM})\s?(?:dollars?|euros?|pounds?|usd|eur|gbp)\b",
            re.IGNORECASE,
        ),
    ),
    ("PERCENT", re.compile(rf"\b(?:{_NUM})\s?(?:%|percent\b)", re.IGNORECASE)),
    (
        "DATE",
        re.compile(
            rf"\b\d{{4}}-\d{{2}}-\d{{2}}\b"
            rf"|\b(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?\b"
            rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTHS})\b(?:,?\s+\d{{4}})?"
            rf"|\b(?:{_MONTHS})\s+\d{{4}}\b"
            rf"|\b(?:{_WEEKDAYS}|today|tomorrow|yesterday)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "TIME",
        re.compile(
            r"\b\d{1,2}:\d{2}(?::\d{2})?\s?(?:[ap]\.?m\.?)?(?!\w)|\b\d{1,2}\s?[ap]\.?m\.?(?!\w)"
            r"|\b(?:noon|midnight)\b",
            re.IGNORECASE,
        ),
    ),
    ("NUMBER", re.compile(rf"(?<![\w.:$€£-])(?:{_NUM})(?![\w:%])")),
)
# Capitalised words in a row (allowing "of", "de", "van", ... inside, and initials).
_CAPITALISED = "(?:[A-Z][a-zA-Z'\u2019-]+|[A-Z]\\.)"
_NAME = re.compile(rf"\b{_CAPITALISED}(?:\s+(?:(?:of|de|van|von|the)\s+)?{_CAPITALISED})*")
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+|\n\s*|[\"“(]\s*)$")
_NOT_NAMES = frozenset(
    [
        "I",
        "I'm",
        "I've",
        "I'll",
        "I'd",
        "OK",
        "Okay",
        "Yes",
        "No",
        "Oh",
        "Hi",
        "Hello",
        "Thanks",
        "Thank",
        "So",
        "And",
        "But",
        "Or",
        "The",
        "A",
        "An",
        "This",
        "That",
        "These",
        "Those",
        "It",
        "We",
        "You",
        "He",
        "She",
        "They",
        "There",
        "Here",
        "What",
        "When",
        "Where",
        "Why",
        "How",
    ]
)


def find_entities(text: str) -> list[tuple[str, str, int]]:
    """Rule-based entities: ``(label, text, start offset)``, in text order.

    Overlaps are resolved by the order of the table in the module docstring
    (an email is not also a URL, money is not also a number).
    """
    taken: list[tuple[int, int]] = []
    found: list[tuple[str, str, int]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e in taken)

    for label, pattern in _ENTITY_PATTERNS:
        for match in pattern.finditer(text):
            if free(match.start(), match.end()):
                taken.append((match.start(), match.end()))
                value = _normalise(match.group(0))
                if label == "TIME":
                    value = value.rstrip(".")  # "10:30 am." ends a sentence
                found.append((label, value, match.start()))
    for match in _NAME.finditer(text):
        # Split the capitalised run where a word is not part of a name (already
        # a date, say, or "The"), then judge each part.
        tokens = [
            (m.group(0), match.start() + m.start()) for m in re.finditer(r"\S+", match.group(0))
        ]
        run: list[tuple[str, int]] = []
        for token in [*tokens, ("", -1)]:
            word, start = token
            usable = (
                start >= 0
                and word not in _NOT_NAMES
                and free(start, start + len(word))
                and (word[0].isupper() or run)
            )
            if usable:
                run.append(token)
                continue
            while run and run[-1][0][0].islower():  # a trailing "of", "and"
                run.pop()
            if run:
                first = run[0][1]
                at_sentence_start = bool(_SENTENCE_START.search(text[max(0, first - 3) : first]))
                if len(run) > 1 or not at_sentence_start:
                    end = run[-1][1] + len(run[-1][0])
                    taken.append((first, end))
                    found.append(("NAME", _normalise(text[first:end]), first))
            run = []
    found.sort(key=lambda item: item[2])
    return found


def _normalise(text: str) -> str:
    return " ".join(text.split())


_yake_extractor: Any = None


def find_keywords(text: str, top: int = 10) -> list[tuple[str, float]]:
    """YAKE keywords of ``text`` (1- and 2-word phrases), best first, as
    ``(phrase, score)``; lower scores are better. The extractor is created on
    first use and reused (the document's lazy model loading)."""
    global _yake_extractor
    if not text.strip():
        return []
    if _yake_extractor is None:
        import yake

        _yake_extractor = yake.KeywordExtractor(lan="en", n=2, dedupLim=0.7, top=top)
    _yake_extractor.top = top
    return [
        (phrase.lower(), float(score)) for phrase, score in _yake_extractor.extract_keywords(text)
    ]


# -- snapshots ------------------------------------------------------------------------


@dataclass
class Snapshot:
    """Entities and keywords with counts (for a chunk, or running totals).

    ``keywords`` counts, per phrase, the chunks in which YAKE ranked it among
    the top; ``entities`` counts occurrences, keyed by ``(label, text)``.
    """

    entities: BoundedCounter = field(default_factory=BoundedCounter)
    keywords: BoundedCounter = field(default_factory=BoundedCounter)
    characters: int = 0
    words: int = 0
    chunks: int = 0
    # Best YAKE score seen per phrase: orders phrases ranked in as many chunks.
    keyword_scores: dict[str, float] = field(default_factory=dict)

    def add_keyword(self, phrase: str, score: float) -> None:
        self.keywords.add(phrase)
        self.keyword_scores[phrase] = min(score, self.keyword_scores.get(phrase, score))
        if len(self.keyword_scores) > 2 * self.keywords.capacity:  # stay bounded
            self.keyword_scores = {p: v for p, v in self.keyword_scores.items() if self.keywords[p]}

    def top_entities(self, n: int = 10) -> list[tuple[str, str, int]]:
        return [(label, text, count) for (label, text), count in self.entities.most_common(n)]

    def top_keywords(self, n: int = 10) -> list[tuple[str, int]]:
        """Phrases by the number of chunks that ranked them, then by best score."""
        scores = self.keyword_scores
        ranked = sorted(
            self.keywords.most_common(), key=lambda kv: (-kv[1], scores.get(kv[0], 1.0), kv[0])
        )
        return ranked[:n]

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        return {
            "chunks": self.chunks,
            "characters": self.characters,
            "words": self.words,
            "entities": [
                {"label": label, "text": text, "count": count}
                for label, text, count in self.top_entities(top)
            ],
            "keywords": [{"phrase": p, "chunks": c} for p, c in self.top_keywords(top)],
            "distinct_entities": len(self.entities),
            "distinct_keywords": len(self.keywords),
            "exact": self.entities.exact and self.keywords.exact,
        }


@dataclass(frozen=True)
class ChunkSnapshot:
    """One chunk's findings, and the running totals after it."""

    index: int
    start: int  # character offset of the chunk in the whole text
    length: int
    entities: list[tuple[str, str]]  # counted in this chunk (not in the overlap already seen)
    keywords: list[tuple[str, float]]
    totals: Snapshot

    def to_dict(self, top: int = 5) -> dict[str, Any]:
        return {
            "chunk": self.index,
            "start": self.start,
            "length": self.length,
            "entities": [{"label": label, "text": text} for label, text in self.entities],
            "keywords": [{"phrase": p, "score": round(s, 4)} for p, s in self.keywords],
            "totals": self.totals.to_dict(top),
        }


def snapshot_text(
    text: str,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    top: int = 10,
) -> Snapshot:
    """The snapshot of a whole text (e.g. a session's transcript)."""
    processor = StreamingProcessor(chunk_size=chunk_size, overlap=overlap, top=top)
    for _ in processor.process([text]):
        pass
    return processor.totals


class StreamingProcessor:
    """Chunks a stream of text pieces and snapshots each chunk.

    Memory: one chunk (``chunk_size`` characters plus one piece of input) and
    the bounded totals, whatever the input's length.
    """

    def __init__(
        self,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        overlap: int = DEFAULT_OVERLAP,
        top: int = 10,
        totals_capacity: int = DEFAULT_TOTALS_CAPACITY,
        gc_every_chunks: int | None = None,
        keyword_fn: Callable[[str, int], list[tuple[str, float]]] | None = None,
    ) -> None:
        if chunk_size < 50:
            raise NLPError(f"chunk size must be at least 50 characters, got {chunk_size}")
        if not 0 <= overlap < chunk_size // 2:
            raise NLPError(
                f"overlap must be at least 0 and less than half the chunk size "
                f"({chunk_size // 2}), got {overlap}"
            )
        self.chunk_size = chunk_size
        self.overlap = overlap
        self.top = top
        self.gc_every_chunks = gc_every_chunks
        self.keyword_fn = keyword_fn or find_keywords
        self.totals = Snapshot(BoundedCounter(totals_capacity), BoundedCounter(totals_capacity))

    def process(self, pieces: Iterable[str]) -> Iterator[ChunkSnapshot]:
        buffer = ""
        consumed = 0  # offset of buffer[0] in the whole text
        index = 0
        for piece in pieces:
            buffer += piece
            while len(buffer) >= self.chunk_size + self.overlap:
                cut = _cut(buffer, self.chunk_size)
                # The next chunk starts `overlap` characters before this one
                # ends, at a word. This chunk counts what starts before that
                # point; an entity shorter than the overlap that starts before
                # it also ends inside this chunk, so it is seen whole, and what
                # starts after it is counted by the next chunk.
                keep = _word_start(buffer, max(1, cut - self.overlap))
                keep = min(keep, cut)
                yield self._chunk(index, consumed, buffer[:cut], keep)
                consumed += keep
                buffer = buffer[keep:]
                index += 1
                if self.gc_every_chunks and index % self.gc_every_chunks == 0:
                    gc.collect()
        if buffer.strip() or index == 0:
            yield self._chunk(index, consumed, buffer, len(buffer))
        else:
            self.totals.characters += len(buffer)  # trailing blank text: no chunk of its own

    def _chunk(self, index: int, start: int, text: str, owned: int) -> ChunkSnapshot:
        entities = [
            (label, found) for label, found, offset in find_entities(text) if offset < owned
        ]
        keywords = self.keyword_fn(text, self.top)
        totals = self.totals
        for entity in entities:
            totals.entities.add(entity)
        for phrase, score in keywords:
            totals.add_keyword(phrase, score)
        mine = text[:owned]
        totals.characters += len(mine)
        totals.words += len(mine.split())
        totals.chunks += 1
        return ChunkSnapshot(index, start, len(text), entities, keywords, totals)


def _cut(buffer: str, size: int) -> int:
    """Where to end a chunk of about ``size`` characters: at a sentence end or a
    space in its last fifth, else at ``size``."""
    window = buffer[: size + 1]
    for mark in (". ", "? ", "! ", "\n"):
        at = window.rfind(mark, size * 4 // 5)
        if at != -1:
            return at + len(mark)
    at = window.rfind(" ", size * 4 // 5)
    return at + 1 if at != -1 else size


def _word_start(buffer: str, pos: int) -> int:
    """Move ``pos`` forward to the start of a word (the overlap never starts mid-word)."""
    while 0 < pos < len(buffer) and not buffer[pos - 1].isspace():
        pos += 1
    return pos


# -- readers ----------------------------------------------------------------------------


def mmap_blocks(path: str | os.PathLike[str], block_bytes: int = 1 << 20) -> Iterator[str]:
    """Text of a large file through a memory map, one block at a time.

    Only the pages of the current block are resident; a UTF-8 sequence cut by a
    block boundary is completed from the next block.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            pos = 0
            while pos < size:
                end = min(size, pos + block_bytes)
                # Back off to a UTF-8 boundary (continuation bytes are 10xxxxxx).
                while end < size and (mapped[end] & 0xC0) == 0x80:
                    end -= 1
                yield _decode(bytes(mapped[pos:end]), path, pos)
                pos = end
                if hasattr(mapped, "madvise"):
                    # Pages already read are not needed again.
                    mapped.madvise(mmap.MADV_DONTNEED, 0, pos - pos % mmap.PAGESIZE)


def _decode(data: bytes, path: str | os.PathLike[str], offset: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NLPError(
            f"{path}: not UTF-8 text (byte {offset + exc.start}: "
            f"{data[exc.start : exc.start + 4]!r})"
        ) from None


def _block_reader(fh: TextIO, block_chars: int = 1 << 16) -> Iterator[str]:
    while block := fh.read(block_chars):
        yield block


def text_pieces(path: str | os.PathLike[str], strategy: Strategy | None = None) -> Iterator[str]:
    """The text of a transcript file as a stream of pieces.

    WebVTT files (``.vtt`` or a ``WEBVTT`` first line) yield each cue's plain
    text; other files are plain text, read as the strategy for their size says.
    """
    p = Path(path)
    if not p.exists():
        raise NLPError(f"{p}: no such file")
    if p.is_dir():
        raise NLPError(f"{p}: is a directory, not a transcript")
    size = p.stat().st_size
    strategy = strategy or choose_strategy(size)
    with p.open("rb") as fh:
        head = fh.read(16)
    if p.suffix.lower() == ".vtt" or head.lstrip(b"\xef\xbb\xbf").startswith(b"WEBVTT"):
        return _vtt_pieces(p)
    if strategy.reader == "mmap":
        return mmap_blocks(p)
    if strategy.reader == "whole":
        return iter([_decode(p.read_bytes(), p, 0)])
    return _utf8_blocks(p)


def _utf8_blocks(path: Path) -> Iterator[str]:
    try:
        with path.open("r", encoding="utf-8", newline="") as fh:
            yield from _block_reader(fh)
    except UnicodeDecodeError as exc:
        raise NLPError(f"{path}: not UTF-8 text ({exc.reason})") from None


def _vtt_pieces(path: Path) -> Iterator[str]:
    from reference_app.vtt import VTTReader

    reader = VTTReader(path)
    for cue in reader:
        yield cue.plain_text + "\n"


def iter_chunks(
    source: str | os.PathLike[str],
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    *,
    top: int = 10,
    processor: StreamingProcessor | None = None,
) -> Iterator[ChunkSnapshot]:
    """Per-chunk snapshots of a transcript or VTT file, with running totals."""
    strategy = choose_strategy(Path(source).stat().st_size) if Path(source).exists() else None
    pieces = text_pieces(source, strategy)
    proc = processor or StreamingProcessor(
        chunk_size=chunk_size,
        overlap=overlap,
        top=top,
        gc_every_chunks=strategy.gc_every_chunks if strategy else None,
    )
    yield from proc.process(pieces)


__all__ = [
    "STRATEGIES",
    "BoundedCounter",
    "ChunkSnapshot",
    "NLPError",
    "Snapshot",
    "Strategy",
    "StreamingProcessor",
    "choose_strategy",
    "find_entities",
    "find_keywords",
    "iter_chunks",
    "mmap_blocks",
    "snapshot_text",
    "text_pieces",
]

if __name__ == "__main__":  # pragma: no cover - a quick look from the shell
    for chunk in iter_chunks(sys.argv[1]):
        print(chunk.to_dict())
