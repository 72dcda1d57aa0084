"""Verdict messages as a short headline and detail lines, for failure sections and summaries."""

from __future__ import annotations

# A message longer than this is shown as a headline plus detail lines.
HEADLINE_WIDTH = 100


def _top_level(text: str) -> tuple[str, list[str]]:
    """``text`` without its long top-level ``(...)`` groups, and their contents."""
    kept: list[str] = []
    groups: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if depth == 0:
                inner = text[start + 1 : i]
                # Short asides ("(daemon)", "(x5)") stay in the line they qualify.
                if len(inner) >= 20:
                    groups.append(inner)
                else:
                    kept.append(text[start : i + 1])
        elif depth == 0:
            kept.append(ch)
    if depth:  # unbalanced: leave the text alone
        return text, []
    return " ".join("".join(kept).split()), groups


def _split_top(text: str, sep: str = "; ") -> list[str]:
    """``text`` split on ``sep`` outside brackets and quotes."""
    out: list[str] = []
    depth = 0
    quote = ""
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        # A quote opens and closes at a word's edge: "harness's" is no quote.
        before = text[i - 1] if i else " "
        after = text[i + 1] if i + 1 < len(text) else " "
        if quote:
            if ch == quote and not after.isalnum():
                quote = ""
        elif ch in "'\"" and not before.isalnum():
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}" and depth:
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            out.append(text[start:i])
            start = i + len(sep)
            i = start
            continue
        i += 1
    out.append(text[start:])
    return [p for p in out if p]


def message_lines(message: str, width: int = HEADLINE_WIDTH) -> list[str]:
    """A verdict's message as a short headline and detail lines.

    Messages are one line, for the results and the short test summary; in a
    failure section a 400-character line reads badly. The headline keeps the
    sentence, the details get its long asides (confidence interval, last
    runs) and the resources it lists, one per line under their label.
    """
    if len(message) <= width:
        return [message]
    parts = _split_top(message)
    sentence: list[str] = []
    listing: list[str] = []
    label = None
    for k, part in enumerate(parts):
        bare = _top_level(part)[0]
        if bare.count(": ") >= (2 if k == 0 else 1):
            # "resources: 3 left behind ...: thread 'a'; ..." or "...; left
            # behind by the measured runs: fd 5; fd 6": the list goes below.
            lead, first = part.rsplit(": ", 1)
            if k == 0:
                sentence.append(lead)
            else:
                label = f"{lead}:"
            listing = [first, *parts[k + 1 :]]
            break
        sentence.append(part)
    clauses: list[str] = []
    details: list[str] = []
    trends = [w for w in (_grows(part) for part in sentence) if w]
    for part in sentence:
        bare, groups = _top_level(part)
        clauses.append(bare)
        # Several metrics: each one's trend aside (the first) says whose it is
        # ("rss: 95% CI ..."); a later aside is about the whole verdict.
        metric = _grows(part)
        whose = f"{metric}: " if len(trends) > 1 and metric else ""
        for i, g in enumerate(groups):
            details += [(whose if i == 0 else "") + line for line in _split_top(g)]
    if label is not None:
        details.append(label)
    details += [f"  {item}" if label is not None else item for item in listing]
    return ["; ".join(clauses), *details]


def _grows(clause: str) -> str | None:
    """``rss`` for a clause "[leak: ]rss grows +1.0 MiB/run ...", else None."""
    words = clause.split(": ", 1)[-1].split()
    return words[0] if len(words) > 1 and words[1] == "grows" else None


def headline(message: str) -> str:
    """The first line of :func:`message_lines`: what the short summary shows."""
    return message_lines(message)[0]
