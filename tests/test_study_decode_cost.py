"""Study decode_cost (C2, C9): the rules on synthetic decode and timing tables (every verdict
reachable, C9 only on CUDA and `not measured on cpu` elsewhere, C2 on any device; families
not names, except the LSTM that C9 names), the hardware stamp read from the rows, the IQRs
shown, the reading generated from the numbers, and the section's figure."""

import matplotlib
import pandas as pd
import pytest

from seqbench.report.plot import Figures
from seqbench.studies import decode_cost as study
from seqbench.studies import study_jobs

matplotlib.use("Agg")

FAMILIES = {"lstm": "recurrent", "gru": "recurrent", "transformer": "attention", "mingru": "scan"}
CONTEXTS = (16, 64, 256)
CPU = {"device": "cpu", "device_name": "cpu", "torch": "2.13.0", "dtype": "fp32"}
CUDA = {"device": "cuda", "device_name": "NVIDIA H200", "torch": "2.13.0", "cuda": "CUDA 12.8",
        "dtype": "bf16-autocast"}  # fmt: skip


def _decode(speed, models=("lstm", "gru", "transformer", "mingru"), hardware=CPU):
    """speed(model, mode) -> tokens per second, at every context."""
    rows = []
    for m in models:
        for mode in ("state", "recompute", "teacher_forced"):
            for c in CONTEXTS:
                tps = speed(m, mode) / (c / 16 if mode == "recompute" else 1)
                attention = FAMILIES[m] == "attention"
                state = (64 * c if attention else 512) if mode == "state" else None
                rows.append({
                    "run": f"{m}-decode", "study": "decode_cost", "status": "complete",
                    "model": m, "family": FAMILIES[m], "impl": "-" if attention else "fused",
                    "mode": mode, "context": c, "batch_size": 1, "tokens_per_s": tps,
                    "s_per_token": 1 / tps, "iqr_s_per_token": 0.1 / tps, "state_bytes": state,
                    "threads": 1, **hardware,
                })  # fmt: skip
    return pd.DataFrame(rows)


def _timing(lstm_s, transformer_s, lstm_impl="fused", hardware=CPU):
    """time_vs_length train steps at fixed batch: seconds per call of the two models."""
    rows = [
        {"run": f"{m}-timing", "study": "time_vs_length", "status": "complete", "model": m,
         "family": FAMILIES[m], "impl": impl, "mode": "fixed_batch", "step": "train_step",
         "T": T, "median_s": s, "iqr_s": s / 20, "threads": 2, **hardware}
        for m, impl, s in (("lstm", lstm_impl, lstm_s), ("transformer", "-", transformer_s))
        for T in CONTEXTS
    ]  # fmt: skip
    return pd.DataFrame(rows)


def _speed(transformer_tf=1000.0, transformer_state=100.0, lstm_state=100.0):
    table = {("transformer", "teacher_forced"): transformer_tf}
    table |= {("transformer", "state"): transformer_state, ("lstm", "state"): lstm_state}
    return lambda m, mode: table.get((m, mode), 500.0 if mode == "teacher_forced" else 100.0)


def _by_claim(tables):
    return {v.claim: v for v in study.verdicts(tables)}


@pytest.mark.parametrize("tf, verdict", [(1000.0, "supported"), (400.0, "not supported")])
def test_c2_verdicts(tf, verdict):
    c2 = _by_claim({"decode": _decode(_speed(transformer_tf=tf))})["C2"]
    assert c2.verdict == verdict and c2.rule == study.C2_RULE.text
    assert c2.measured.startswith(f"teacher-forced / stepwise tokens per second at context 256: "
                                  f"transformer {tf / 100:g}×")  # fmt: skip
    assert "gru 5×" in c2.measured and c2.hardware == "cpu, torch 2.13.0, fp32, 1 thread(s)"
    ms = 1e3 / tf  # seconds per token from tokens per second, IQR a tenth of it
    assert f"transformer teacher forced {ms:.3g} ms (IQR {ms / 10:.2g})" in c2.measured
    assert c2.stability.startswith("n/a")


def test_c2_reads_the_attention_family():
    no_attention = _decode(_speed(), models=("lstm", "gru", "mingru"))
    assert "C2" not in _by_claim({"decode": no_attention})
    assert study.verdicts({}) == []


@pytest.mark.parametrize(
    "lstm_s, transformer_s, transformer_state, verdict",
    [
        (2.0, 1.0, 80.0, "supported"),  # trains 2x as fast, decodes 0.8x: nearer parity
        (2.0, 1.0, 300.0, "not supported"),  # decodes 3x as fast: the gap grew
        (1.0, 2.0, 100.0, "nuanced"),  # does not train faster here: no gap to narrow
    ],
)
def test_c9_verdicts_on_cuda(lstm_s, transformer_s, transformer_state, verdict):
    tables = {
        "decode": _decode(_speed(transformer_state=transformer_state), hardware=CUDA),
        "timing": _timing(lstm_s, transformer_s, hardware=CUDA),
    }
    c9 = _by_claim(tables)["C9"]
    assert c9.verdict == verdict and c9.rule == study.C9_RULE.text
    train = f"training {lstm_s / transformer_s:.3g}×"
    assert c9.measured.startswith(f"transformer/lstm (fused) speed at T=256: {train}")
    gpu = "NVIDIA H200 (cuda), torch 2.13.0, CUDA 12.8, bf16-autocast"
    assert c9.hardware == f"training {gpu}, 2 thread(s); decoding {gpu}, 1 thread(s)"
    assert f"training step, median (IQR): lstm {lstm_s * 1e3:.3g} ms (IQR" in c9.measured


@pytest.mark.parametrize("decode_hw, timing_hw", [(CPU, CPU), (CUDA, CPU), (CPU, CUDA)])
def test_c9_off_cuda_is_not_measured_but_shows_its_figures(decode_hw, timing_hw):
    tables = {
        "decode": _decode(_speed(transformer_state=80.0), hardware=decode_hw),
        "timing": _timing(2.0, 1.0, hardware=timing_hw),
    }
    c9 = _by_claim(tables)["C9"]
    assert c9.verdict == "not measured on cpu"
    assert "training 2×, decoding (KV cache vs state) 0.8×" in c9.measured
    assert _by_claim(tables)["C2"].verdict == "supported"  # C2 is decided anywhere


def test_c9_needs_the_fused_lstm_by_name():
    decode = _decode(_speed())
    assert "C9" not in _by_claim({"decode": decode})  # no timing table
    assert "C9" not in _by_claim({"decode": decode, "timing": _timing(2.0, 1.0, "unrolled")})
    gru_only = decode[decode.model != "lstm"]
    assert "C9" not in _by_claim({"decode": gru_only, "timing": _timing(2.0, 1.0)})


def test_reading_follows_the_numbers():
    tables = {"decode": _decode(_speed()), "timing": _timing(2.0, 1.0)}
    text = study._reading(study._table(tables), tables)
    assert text.startswith("**Reading.** Seconds per generated token grow with context as ")
    assert "transformer (KV cache) T^" in text and "lstm (recompute) T^1" in text
    assert "10× (transformer) as fast per token as generating it" in text
    assert "the state of gru (512 bytes), lstm (512 bytes), mingru (512 bytes) stays" in text
    assert "transformer's grows ×16 to 16,384 bytes" in text
    assert "At T=256, transformer trains 2× as fast as the fused LSTM" in text
    fixed = _decode(_speed())
    fixed["state_bytes"] = fixed.state_bytes.where(fixed.state_bytes.isna(), 8)  # all the same
    text = study._reading(study._table({"decode": fixed}), {})
    assert "grows" not in text.split("From a")[1] and "trains" not in text


def test_section_draws_the_figure(tmp_path):
    md = study.section({"decode": _decode(_speed())}, Figures(tmp_path, FAMILIES))
    assert (tmp_path / "decode_cost_latency.png").exists() and "(decode_cost_latency.png)" in md
    assert "cpu, 1 thread(s), batch 1" in md and "**Reading.**" in md
    assert "`not measured on cpu`" in md and study.CPU_CUT in md
    cuda = study.section({"decode": _decode(_speed(), hardware=CUDA)}, Figures(tmp_path, FAMILIES))
    assert "not measured on" not in cuda
    assert study.section({}, Figures(tmp_path, FAMILIES)).startswith("_No completed")


def test_bench_jobs_run_the_renamed_experiment_alone():
    for profile, (job,) in study_jobs(study.__name__).items():
        assert job.name == "decode_cost" and job.command()[1:3] == ["-m", "+experiment=decode_cost"]
        assert not any("joblib" in a for a in job.args), profile


def _spread(df, spread, column, prefix):
    """Groups' lowest and highest medians ``spread`` x either side of each row's median."""
    return df.assign(**{f"{prefix}min{column}": df[f"{column.strip('_')}"] / spread,
                        f"{prefix}max{column}": df[f"{column.strip('_')}"] * spread})  # fmt: skip


def _grouped(df, spread):
    return _spread(df, spread, "_s_per_token", "block_")


def test_c2_blocks_that_disagree_make_it_inconclusive():
    # teacher forcing is 6x faster by the medians, 3.8x-9.4x as the groups allow: the rule's
    # factor 5 lies inside
    decode = _grouped(_decode(_speed(transformer_tf=600.0)), 1.25)
    c2 = _by_claim({"decode": decode})["C2"]
    assert c2.verdict == "inconclusive"
    assert "blocks disagree: 3.8-9.4 (transformer)" in c2.measured
    c2 = _by_claim({"decode": _grouped(_decode(_speed(transformer_tf=600.0)), 1.02)})["C2"]
    assert c2.verdict == "supported" and "blocks disagree" not in c2.measured


def test_c9_blocks_that_disagree_say_so_on_cuda_and_off_it():
    def tables(hw, spread):
        timing = _timing(2.0, 1.0, hardware=hw).assign(
            block_min_s=lambda d: d.median_s / spread, block_max_s=lambda d: d.median_s * spread
        )
        decode = _grouped(_decode(_speed(transformer_state=80.0), hardware=hw), spread)
        return {"decode": decode, "timing": timing}

    # by the medians decoding (0.8x) is nearer parity than training (2x); groups 1.5x either
    # side allow training 0.89-4.5 and decoding 0.36-1.8: they can read either way
    c9 = _by_claim(tables(CUDA, 1.5))["C9"]
    assert c9.verdict == "inconclusive"
    assert "blocks disagree: decoding 0.36-1.8, training 0.89-4.5" in c9.measured
    assert _by_claim(tables(CUDA, 1.02))["C9"].verdict == "supported"
    c9 = _by_claim(tables(CPU, 1.5))["C9"]
    assert c9.verdict == "not measured on cpu" and "blocks disagree: decoding" in c9.measured
