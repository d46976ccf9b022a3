"""The claims table: the lecture's claims (../shared/LECTURE.md, in our words), each with the
verdicts the studies computed, or ``not measured`` where none did."""

from seqbench.report.plot import md_table
from seqbench.studies import VERDICTS, Verdict

LECTURE = {  # one line each
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


def claims_table(verdicts: list[Verdict], extra: dict[str, str] | None = None) -> str:
    """Lecture claims in order, then claims the studies add (``extra``: id -> text)."""
    texts = LECTURE | (extra or {})
    by_claim: dict[str, list[Verdict]] = {}
    for v in verdicts:
        by_claim.setdefault(v.claim, []).append(v)
    rows = []
    for cid in [*LECTURE, *sorted(set(by_claim) - set(LECTURE))]:
        text = texts.get(cid, "(beyond the lecture)")
        for v in by_claim.get(cid) or [Verdict(cid, "-", "-", "-", "not measured")]:
            rows.append(
                {
                    "claim": cid,
                    "what the lecture says": text,
                    "experiment": v.experiment,
                    "measured": v.measured,
                    "rule": v.rule,
                    "verdict": f"**{v.verdict}**",
                    "hardware": v.hardware or "-",
                    "stability": v.stability or "-",
                }
            )
    import pandas as pd

    return md_table(pd.DataFrame(rows))


def legend() -> str:
    return (
        f"Verdicts are one of: {', '.join(VERDICTS)}. `inconclusive`: the data exists but "
        "cannot decide (a control failed, a cell did not converge within its cap, or intervals "
        "overlap); `not measured`: no data. Each row states the rule its verdict applies; "
        "`failed: ...` means the study's code raised, with its first line."
    )
