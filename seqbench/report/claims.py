"""The claims table, the first screen of results/README.md: one row per verdict, each a line a
student reads at a glance (the claim in plain words, the verdict, the one number that decides
it, the budget and hardware, its stability in a few words, a link to its study's page). The
rule, every figure and the full measurements live on the study's page (``page``).

The verdicts come from the studies (seqbench/studies/*.py ``verdicts``); what the table
shortens is derived here, not asked of every study: the claim's plain words from ``SHORT``
(keyed by claim id, as ../shared/LECTURE.md numbers them; a claim without one is cut to
``WORDS`` words), the deciding number from the verdict's first measured figure."""

import re
from dataclasses import dataclass

import pandas as pd

from seqbench.report.hardware import short
from seqbench.report.markdown import md_table
from seqbench.report.verdict import Verdict

LECTURE = {  # one line each: the lecture's claims in our words (figure titles quote these)
    "C1": "one next-word objective trains every model",
    "C2": "training is parallel, generation is sequential and expensive",
    "C3": "recurrence is sequential: dependent steps grow with length (wavefront T + L - 1)",
    "C4": "a Transformer layer is one parallel step however long the sequence",
    "C5": "RNNs forget across distance; attention connects distant words directly",
    "C6": "attention has no order without positional encodings",
    "C7": "Transformers need more data; LSTMs take longer to train",
    "C8": "the causal objective beats 15% masking at equal compute for next-word prediction",
    "C9": "at inference both families generate one token at a time; the gap narrows",
    "C10": "quality improves with scale (parameters and compute)",
    "C11": "a model running on its own outputs drifts off the training distribution",
}
SHORT = {  # the claim in plain words, <= WORDS words, for the claims table and contact sheet
    "C1": "one next-word objective trains every model",
    "C1*": "carrying the state across windows beats random windows",
    "C2": "training is parallel; generating is sequential and slower",
    "C3": "recurrent steps wait on each other: they grow with length",
    "C3*": "input-only gates let a recurrence run as a parallel scan",
    "C4": "a Transformer layer is one parallel step at any length",
    "C5": "RNNs forget across distance; attention links distant words",
    "C6": "without positional encodings, attention ignores word order",
    "C7": "Transformers need more data; LSTMs take longer to train",
    "C8": "causal training beats 15% masking at equal compute",
    "C9": "at inference both generate token by token: the gap narrows",
    "C10": "quality improves with scale",
    "C10*": "Transformer loss falls faster with size than the LSTM's",
    "C11": "on its own outputs a model drifts and compounds errors",
}
WORDS = 12
ROW_MAX = 250  # characters of one claims row, markdown included
FIRST_MAX = 100  # the first measured figure is kept whole (with its interval) up to this
SAME = "〃"  # the claim of the row above (its words are said once per claim)
PAGE = "study_{}.md"  # a study's page, beside README.md (see folder.py: plain names only)


@dataclass
class Evidence:
    """A verdict and where it came from: the study that computed it and its budget."""

    verdict: Verdict
    study: str = ""  # the study module ("" where none measured the claim)
    budget: str = ""  # what trained it ("400 steps, 3 seeds, cpu"), "" for none


def claim_key(claim: str):
    """Lecture order (C1, C2, ..., C11), a starred claim right after its base (C3, C3*),
    claims beyond the lecture last."""
    base = (re.match(r"C\d+", claim) or [claim])[0]
    order = list(LECTURE)
    return (order.index(base) if base in order else len(order), claim != base, claim)


def page(study: str) -> str:
    return PAGE.format(study)


def short_claim(cid: str, texts: dict) -> str:
    """The claim in at most WORDS words: SHORT, else the claim's text cut at a clause."""
    if cid in SHORT:
        return SHORT[cid]
    text = re.split(r"\s[(:;]|[;:(]\s", texts.get(cid, "(beyond the lecture)"))[0]
    words = text.split()
    return " ".join(words[:WORDS]) + (" …" if len(words) > WORDS else "")


def deciding(measured: str, width: int = 90) -> str:
    """The verdict's first measured figure: its first clause (up to a top-level ';'), as many
    of that clause's comma-separated figures as fit ``width``, asides in parentheses dropped
    when they do not fit; '…' where something was left out (the page has it whole)."""
    first = _top_level_split(str(measured), ";")
    clause = first[0].strip()
    cut = len(first) > 1
    if len(clause) > width:
        bare = re.sub(r"\s+\([^()]*\)", "", clause).strip()
        cut, clause = True, bare if bare else clause
    if len(clause) > width:
        kept = ""
        for part in _top_level_split(clause, ","):
            if kept and len(kept) + len(part) + 1 > width:
                break
            kept = f"{kept},{part}" if kept else part
        clause = kept if len(kept) <= max(width, FIRST_MAX) else _cut(kept, width)
    return (clause.strip() + (" …" if cut or clause != first[0].strip() else "")) or "-"


def _cut(text: str, width: int) -> str:
    """``text`` cut at a word boundary before ``width``, never inside an interval's brackets."""
    text = text[: width - 1].rsplit(" ", 1)[0]
    return text[: text.rfind("[")].rstrip() if text.count("[") > text.count("]") else text


def _top_level_split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets and parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([" and 1 or (ch in ")]" and -1 or 0)
        if ch == sep and depth <= 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def short_stability(text: str) -> str:
    """The stability column in a few words: 'stable', 'n/a: deterministic', or what flips
    it ('flips: drop seed 1, 2; half budget; smaller lr'); a verdict reported from the longer
    budget names its 1x verdict first ('at 1x: inconclusive'), one that holds at 4x says so
    (', holds at 4x')."""
    text = str(text or "").strip()
    if not text:
        return "-"
    if text.startswith("n/a"):
        inner = re.split(r"[:;,]| with ", text.partition("(")[2].rstrip(")"))[0].split()
        return "n/a: " + " ".join(inner[:4]) if inner else "n/a"
    parts = [re.sub(r" \(one seed: [^)]*\)$", "", p.strip()) for p in text.split(";")]
    holds = [f", {p}".removesuffix(" the budget") for p in parts if p.startswith("holds at")]
    parts = [p for p in parts if not p.startswith("holds at")]
    if parts[0] == "stable":
        return "stable" + (", 1 seed" if "one seed" in text else "") + "".join(holds)
    shorter = [f"at 1x: {p.split(': ', 1)[1]}" for p in parts if p.startswith("at 1x the budget:")]
    seeds = re.findall(r"without seed (\d+)", text)
    other = [
        _few_words(p) for p in parts if not p.startswith(("without seed", "at 1x the budget:"))
    ]
    flips = ([f"drop seed {', '.join(seeds)}"] if seeds else []) + other
    said = shorter + (["flips: " + "; ".join(flips)] if flips else [])
    return "; ".join(said) + "".join(holds)


def _few_words(flip: str) -> str:
    """A flip's setting in the table's words: 'at the next smaller lr (at 1x the budget):
    x' -> 'smaller lr', 'at half the budget: x' -> 'half budget', 'at 4x ...' -> '4x budget'."""
    label = flip.split(":")[0].split(" (")[0].strip()
    return re.sub(r"^at (the )?(next )?", "", label).replace(" the ", " ")


def verdict_words(v: Verdict, most: int = 60) -> str:
    """The verdict as the table shows it; a failure's message cut to ``most`` characters;
    ``(preliminary)`` where no run at the longer budget confirms it."""
    words = v.verdict if len(v.verdict) <= most else v.verdict[: most - 1] + "…"
    return f"**{words}**" + " (preliminary)" * v.preliminary


def claims_table(verdicts, extra: dict[str, str] | None = None) -> str:
    """Lecture claims in order, then claims the studies add (``extra``: id -> text); one row
    per verdict (``Verdict`` or ``Evidence``), ``not measured`` where no study measured it.
    The claim's words are said once per claim, not on every row of it."""
    texts = LECTURE | (extra or {})
    by_claim: dict[str, list[Evidence]] = {}
    for e in verdicts:
        e = e if isinstance(e, Evidence) else Evidence(e)
        by_claim.setdefault(e.verdict.claim, []).append(e)
    rows = []
    for cid in sorted({*LECTURE, *by_claim}, key=claim_key):
        unmeasured = [Evidence(Verdict(cid, "-", "-", "-", "not measured"))]
        mine = by_claim.get(cid) or unmeasured
        for i, (e, which) in enumerate(zip(mine, _which(mine))):
            rows.append(_row(cid, SAME if i else short_claim(cid, texts), e, which))
    return md_table(pd.DataFrame(rows), missing="")


def _which(rows: list[Evidence]) -> list[str]:
    """What tells apart a claim's rows from one study: their experiments less the words they
    share ('scaling (lstm, recurrent; text)' and '... (transformer, attention; text)' ->
    'lstm, recurrent' and 'transformer, attention'); '' for a study's only row."""
    out = []
    for e in rows:
        same = [x.verdict.experiment for x in rows if x.study == e.study]
        if len(same) < 2:
            out.append("")
            continue
        head = len(_common(same)) if len(set(same)) > 1 else 0
        tail = len(_common([x[::-1] for x in same])) if len(set(same)) > 1 else 0
        part = e.verdict.experiment[head : len(e.verdict.experiment) - tail]
        out.append(part.strip(" ;,()") or e.verdict.experiment)
    return out


def _common(texts: list[str]) -> str:
    """The longest prefix of every text that ends at a word boundary."""
    prefix = texts[0]
    for t in texts[1:]:
        while not t.startswith(prefix):
            prefix = prefix[:-1]
    cut = max(prefix.rfind(c) for c in " (;,")
    return prefix if len(prefix) == min(map(len, texts)) else prefix[: cut + 1]


def _row(cid: str, words: str, e: Evidence, which: str = "") -> dict:
    v = e.verdict
    where = ", ".join(dict.fromkeys(re.split(r",\s*", f"{e.budget}, {short(v.hardware)}")))
    where = where.strip(", ") or "-"
    if v.budget:  # which budget the verdict was read at: 1x, or 4x the steps named
        where = f"{v.budget}: {where}" if where != "-" else v.budget
    row = {
        "claim": cid,
        "in plain words": words,
        "verdict": verdict_words(v),
        "the deciding number": "-" if v.measured in ("", "-") else deciding(v.measured),
        "budget, hardware": where,
        "stability": short_stability(v.stability),
        "details": f"[{e.study}{': ' * bool(which)}{which}]({page(e.study)})" if e.study else "-",
    }
    over = _length(row) - ROW_MAX
    width = len(row["the deciding number"])
    while over > 0 and width > 30:  # the deciding number gives way first, to 30 characters
        width = max(30, min(width, len(row["the deciding number"])) - over)
        row["the deciding number"] = deciding(v.measured, width)
        over = _length(row) - ROW_MAX
    while over > 0 and "; " in row["stability"]:  # then what else flips it, a clause at a time
        row["stability"] = row["stability"].rsplit("; ", 1)[0].removesuffix(" …") + " …"
        over = _length(row) - ROW_MAX
    for key in ("stability", "budget, hardware"):  # then the stability's and budget's words
        if over > 0 and len(row[key]) > 12:
            keep = max(10, len(row[key]) - over - 1)
            over -= len(row[key]) - keep - 1
            row[key] = row[key][:keep].rstrip() + "…"
    return row


def _length(row: dict) -> int:
    return len("| " + " | ".join(row.values()) + " |")


def legend() -> str:
    return (
        "**supported** / **not supported**: the data decides the claim by the rule on the "
        "study's page; **nuanced**: part of it holds; **inconclusive**: the data cannot decide "
        "(a control failed, a cell hit its cap, intervals overlap); **not measured**: no run "
        "measured it; **not measured on cpu**: a timing one CPU thread cannot decide (its "
        "figure is shown, marked so); **failed**: the study's code raised. Numbers are means "
        "with 95% intervals over seeds in brackets; `…`: more on the study's page. Budget "
        "**1x** / **4x**: the verdict was read on runs of the steps named, or of four times "
        "them (the full profile's longer runs; a verdict that differs there is reported from "
        "them, its 1x verdict in the stability column); **(preliminary)**: the quick "
        "profile's budget; `make bench PROFILE=full` trains the cells 4x longer."
    )
