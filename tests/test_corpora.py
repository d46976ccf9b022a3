"""Real corpora the way language-model people use them: the folder layout, the whitespace
tokenizer, named corpora from a checked cache, stream batching with the state carried (and
nothing leaking across the split), whole-stream evaluation, the classic SGD recipe with plateau
annealing, and every size knob in run.json. Fixtures are small files the tests write."""

import copy
import hashlib
import io
import json
import math
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from seqbench import cli
from seqbench.config import build_model, build_task, describe_model, model_configs
from seqbench.data import corpora
from seqbench.data.text import EOS, UNK, Text, batchify, stream_windows, tokenize
from seqbench.perf.harness import harness
from seqbench.train import carries_state, train
from tests.conftest import SMALL_POOL, compose_cfg

LINES = ["= Valkyria Chronicles =", "", " the game <unk> began @-@ in 2011 .", "it sold well ."]


def write_corpus(folder: Path, train_lines=LINES * 40, valid="the game sold .\n" * 20, test=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text("\n".join(train_lines) + "\n")
    (folder / "valid.txt").write_text(valid)
    if test is not None:
        (folder / "test.txt").write_text(test)
    return folder


# --- the whitespace tokenizer and the folder layout -------------------------------------------
def test_whitespace_tokenizer_counts_like_pytorch_examples(tmp_path):
    """line.split() + <eos> for every line a file iterates, empty lines and \\r\\n too."""
    raw = "a b\r\n\n  c <unk>  \rd\ne"
    path = tmp_path / "t.txt"
    path.write_bytes(raw.encode())
    with open(path, encoding="utf8") as f:  # pytorch/examples' data.py, written out
        reference = [w for line in f for w in line.split() + ["<eos>"]]
    assert list(tokenize(raw, "whitespace")) == reference
    assert reference == ["a", "b", EOS, EOS, "c", UNK, EOS, "d", EOS, "e", EOS]
    assert list(tokenize("x @-@ y", "word")) == ["x", "@", "-", "@", "y"]  # why it exists


def test_a_folder_is_three_splits_with_the_vocabulary_of_train_alone(tmp_path):
    folder = write_corpus(tmp_path / "wt", test="a new word appears .\n" * 10)
    task = Text(seq_len=4, tokenizer="whitespace", path=str(folder))
    assert set(task.streams) == {"train", "val", "test"}
    assert set(task.eval_streams()) == {"val", "test"}
    words = sum(len(line.split()) + 1 for line in LINES) * 40
    assert len(task.streams["train"]) == words
    assert task.itos[0] == UNK and "<unk>" not in task.itos[1:]  # the corpus's <unk> is id 0
    assert EOS in task.itos and "@-@" in task.itos  # whitespace keeps WikiText's tokens whole
    # vocabulary uncapped, from train only: 'new', 'word', 'appears', 'a' are <unk> in test
    assert task.vocab_size == 1 + len({w for line in LINES for w in line.split()} - {UNK}) + 1
    assert task.unk_share["val"] == 0 and task.unk_share["test"] == pytest.approx(4 / 6)
    assert task.unk_from_cap == 0
    fp = task.fingerprint()
    assert sorted(fp["corpus_files"]) == ["test.txt", "train.txt", "valid.txt"]
    digest = hashlib.sha256((folder / "train.txt").read_bytes()).hexdigest()
    assert fp["corpus_files"]["train.txt"] == digest and fp["test_tokens"] == 60


def test_a_capped_vocabulary_records_what_it_maps_to_unk():
    capped = Text(seq_len=16, tokenizer="word", vocab_size=200)
    assert capped.vocab_size == 200 and 0 < capped.unk_from_cap < 1
    assert capped.fingerprint()["unk_from_cap"] == round(capped.unk_from_cap, 5)
    assert Text(seq_len=16, tokenizer="word").unk_from_cap == 0  # the default keeps every type


def test_the_run_prints_the_share_the_cap_maps_to_unk(make_cfg, capsys):
    cfg = make_cfg(
        "model=lstm",
        "data=text",
        "data.tokenizer=word",
        "data.vocab_size=300",
        "data.seq_len=16",
        "train.steps=2",
        "train.eval_every=2",
        "train.eval_batches=1",
    )
    assert train(cfg)["status"] == "complete"
    err = capsys.readouterr().err
    assert "data.vocab_size=300 maps" in err and "of the training tokens to <unk>" in err


@pytest.mark.parametrize(
    "layout, override, expected",
    [
        ({"valid.txt": "x\n"}, [], "no train.txt there"),
        ({"train.txt": "a b\n" * 50, "valid.txt": " \n"}, [], "valid.txt is empty"),
        ({"train.txt": "a b\n" * 50}, [], "no valid.txt there"),
        ({"train.txt": "a b\n" * 50, "valid.txt": "a\n" * 50}, ["data.val_frac=0.2"], "val_frac"),
        ({"train.txt": "a\n" * 50, "valid.txt": "a\n" * 50, "test.txt": ""}, [], "test.txt is"),
    ],
)
def test_a_bad_corpus_folder_is_refused_in_one_line_before_any_work(
    tmp_path, capsys, layout, override, expected
):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in layout.items():
        (folder / name).write_text(text)
    out = tmp_path / "runs"
    code = cli.main(
        "train", ["data=text", f"data.path={folder}", "data.seq_len=4", f"out_dir={out}", *override]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and expected in err, err
    assert err.startswith("seqbench: error: data.")
    assert not out.exists()  # refused before any directory was made


# --- named corpora -----------------------------------------------------------------------------
def fixture_archive(tmp_path) -> tuple[Path, str]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for split in ("train", "valid", "test"):
            z.writestr(f"toy/wiki.{split}.tokens", "\n".join(LINES * 8) + "\n")
    path = tmp_path / "toy.zip"
    path.write_bytes(buf.getvalue())
    return path, hashlib.sha256(buf.getvalue()).hexdigest()


def test_a_named_corpus_is_fetched_once_checked_and_read_from_the_cache(tmp_path, monkeypatch):
    archive, digest = fixture_archive(tmp_path)
    spec = corpora.Corpus(archive.as_uri(), digest, corpora._splits("toy/wiki.{}.tokens"))
    cache = tmp_path / "cache" / "corpora"
    folder = corpora.fetch("wikitext-2", spec, cache)
    assert sorted(p.name for p in folder.iterdir()) == [
        "corpus.json",
        "test.txt",
        "train.txt",
        "valid.txt",
    ]
    archive.unlink()  # from now on only the cache can serve it
    assert corpora.fetch("wikitext-2", spec, cache) == folder
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(corpora.CORPORA, "wikitext-2", spec)  # the toy archive is the pinned one
    task = Text(seq_len=4, tokenizer="whitespace", corpus="wikitext-2")
    assert task.fingerprint()["corpus"].startswith("wikitext-2 (file://")
    assert task.fingerprint()["corpus_archive_sha256"] == digest


def test_a_cached_folder_that_is_not_the_pinned_corpus_is_refused(tmp_path, monkeypatch):
    """Issue 21: a cached "wikitext-2" holding other text was recorded with the pinned sha256.
    Now the folder must come from the pinned archive, its files unchanged since."""
    archive, digest = fixture_archive(tmp_path)
    toy = corpora.Corpus(archive.as_uri(), digest, corpora._splits("toy/wiki.{}.tokens"))
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path / "cache"))
    folder = corpora.fetch("wikitext-2", toy, corpora.cache_root())  # another archive's text
    with pytest.raises(ValueError, match="not the pinned 92675f1d"):
        Text(seq_len=4, tokenizer="whitespace", corpus="wikitext-2")
    monkeypatch.setitem(corpora.CORPORA, "wikitext-2", toy)  # now it is the pinned archive ...
    assert Text(seq_len=4, tokenizer="whitespace", corpus="wikitext-2").vocab_size > 2
    with open(folder / "train.txt", "a") as f:  # ... but one of its files is edited
        f.write("other text\n")
    with pytest.raises(ValueError, match="cached train.txt is not the file extracted"):
        Text(seq_len=4, tokenizer="whitespace", corpus="wikitext-2")
    (folder / "corpus.json").write_text(json.dumps({"url": toy.url, "sha256": digest}))
    with pytest.raises(ValueError, match="cannot be verified"):  # a folder of an older seqbench
        Text(seq_len=4, tokenizer="whitespace", corpus="wikitext-2")


def test_a_corpus_whose_sha256_differs_is_refused_and_nothing_is_kept(tmp_path):
    archive, digest = fixture_archive(tmp_path)
    spec = corpora.Corpus(archive.as_uri(), "0" * 64, corpora._splits("toy/wiki.{}.tokens"))
    with pytest.raises(ValueError, match=f"data.corpus=toy is not allowed: .* sha256 {digest}"):
        corpora.fetch("toy", spec, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
    unpinned = corpora.Corpus(archive.as_uri(), None, {})
    with pytest.raises(ValueError, match="no sha256 is pinned"):
        corpora.fetch("toy", unpinned, tmp_path / "cache")


def test_nothing_is_downloaded_unless_a_corpus_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path / "cache"))
    Text(seq_len=16)
    Text(seq_len=16, path=str(write_corpus(tmp_path / "mine")))
    assert not (tmp_path / "cache").exists()
    assert OmegaConf.load(Path(corpora.__file__).parents[1] / "conf/data/text.yaml").corpus is None
    with pytest.raises(ValueError, match="data.corpus=ptb is not allowed: no sha256 is pinned"):
        Text(seq_len=16, corpus="ptb")  # unpinned: refused before any network access
    with pytest.raises(ValueError, match="data.corpus=nope is not allowed: one of wikitext-2"):
        Text(seq_len=16, corpus="nope")


def test_a_byte_split_moves_each_cut_to_a_character_start():
    raw = "aé".encode() * 10  # bytes a, é, é' (é is 2 bytes): a cut at 2 lands inside it
    parts = corpora.split_bytes(raw, (2, 3, 3))
    assert [len(p) for p in parts.values()] == [3, 3, 3]  # 2 -> 3; 6 and 9 are starts
    assert b"".join(parts.values()) == raw[:9]
    assert [p.decode("utf-8") for p in parts.values()] == ["aé"] * 3


# --- stream batching ---------------------------------------------------------------------------
def test_stream_batches_are_consecutive_windows_of_contiguous_columns():
    task = Text(seq_len=8, stream=True)
    B, T, ids = 4, 8, task.streams["train"]
    columns = batchify(ids, B)  # [B, N]
    N = columns.size(1)
    for b in range(B):  # each row is one contiguous chunk of the stream, in order
        assert torch.equal(columns[b], ids[b * N : (b + 1) * N])
    W = task.windows_per_pass(B)
    assert W == (N - 1) // T and task.starts_pass(0, B) and task.starts_pass(W, B)
    assert not task.starts_pass(1, B)
    x0, y0 = task.batch("train", 0, B)
    x1, y1 = task.batch("train", 1, B)
    assert torch.equal(x0, columns[:, :T]) and torch.equal(y0, columns[:, 1 : T + 1])
    assert torch.equal(x1[:, 0], y0[:, -1])  # window 1 continues where window 0 ended
    assert torch.equal(task.batch("train", W, B)[0], x0)  # the next pass starts again
    # every training target is a train token at its own position: nothing from the held-out tail
    last = task.batch("train", W - 1, B)[1]
    assert torch.equal(last[:, -1], columns[:, W * T])


def test_stream_windows_score_every_held_out_token_once():
    ids = torch.arange(103)
    windows = list(stream_windows(ids, 4, 7))
    targets = torch.cat([y for _, y in windows], dim=1)  # [B, N - 1]
    assert torch.equal(targets, batchify(ids, 4)[:, 1:])  # nothing twice, nothing left out
    assert [x.size(1) for x, _ in windows] == [7, 7, 7, 3]  # 25 per column: a short last one


def _state_sizes(state) -> list:
    """Every tensor's shape in a state (a tensor, a number, or tuples/lists/dicts of them)."""
    if isinstance(state, torch.Tensor):
        return [tuple(state.shape)]
    if not isinstance(state, tuple | list | dict):
        return [()]  # a count: one number, whatever its value
    items = state.values() if isinstance(state, dict) else state
    return [s for item in items for s in _state_sizes(item)]


def test_only_a_state_of_fixed_size_is_carried():
    """carries_state (one token, then one more) agrees with a second way of asking: the state
    after 3 tokens and after 12 in one call have the same sizes. Every model file (a user's
    too); the hidden state and the KV cache are the two answers seqbench ships."""
    answers = {}
    for name, node in model_configs().items():
        model = build_model(node, 11, "cpu").eval()
        with torch.no_grad():
            short, long = (model(torch.zeros(2, t, dtype=torch.long))[1] for t in (3, 12))
        fixed = _state_sizes(short) == _state_sizes(long)
        answers[name] = carries_state(model, "cpu")
        assert answers[name] == fixed, name
    assert answers["lstm"] and not answers["transformer"]


def stream_run(tmp_path, model="lstm", *extra):
    cfg = compose_cfg(
        [
            "device=cpu",
            "train.threads=1",
            f"model={model}",
            "data=text",
            "data.seq_len=8",
            "data.stream=true",
            "train.batch_size=4",
            f"out_dir={tmp_path}",
            *extra,
        ]
    )
    task = build_task(cfg.data)
    return harness(cfg, task, tmp_path / "run"), task


def test_the_state_is_carried_detached_into_the_next_window(tmp_path):
    run, task = stream_run(tmp_path)
    assert run.carry and run.state is None
    x0, y0 = task.batch("train", 0, 4)
    x1, y1 = task.batch("train", 1, 4)
    run.train_step(x0, y0)
    h, c = run.state
    assert not h.requires_grad and not c.requires_grad  # detached: truncated BPTT
    before = copy.deepcopy(run.model)  # the weights step 1 computes its loss with
    loss, _ = run.train_step(x1, y1)
    with torch.no_grad():
        carried = F.cross_entropy(before(x1, (h, c))[0].flatten(0, 1), y1.flatten())
        fresh = F.cross_entropy(before(x1)[0].flatten(0, 1), y1.flatten())
    assert float(loss.detach()) == pytest.approx(float(carried), rel=1e-5)
    assert abs(float(carried) - float(fresh)) > 1e-4  # the carried state changes the loss


def test_a_resumed_stream_run_continues_from_the_carried_state(tmp_path):
    run, task = stream_run(tmp_path)
    for step in range(3):
        run.train_step(*task.batch("train", step, 4))
    run.save()
    again, _ = stream_run(tmp_path)  # the same directory: build() loads ckpt.pt
    assert again.step == 3
    for a, b in zip(run.state, again.state):
        assert torch.equal(a, b)


def test_a_transformer_in_stream_mode_reads_each_window_fresh(tmp_path):
    run, task = stream_run(tmp_path, "transformer")
    assert not run.carry
    run.train_step(*task.batch("train", 0, 4))
    assert run.state is None


def test_whole_stream_evaluation_starts_from_zero_and_reads_only_the_held_out_split(tmp_path):
    run, task = stream_run(tmp_path, "lstm", "train.eval_batch_size=3")
    run.train_step(*task.batch("train", 0, 4))
    assert run.state is not None  # the training state must not reach the evaluation
    loss, acc = run.stream_loss(task.streams["val"])
    state, total, count = None, 0.0, 0
    with torch.no_grad():
        run.model.eval()
        for x, y in stream_windows(task.streams["val"], 3, 8):
            logits, state = run.model(x, state)
            total += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
            count += y.numel()
    assert loss == pytest.approx(total / count, rel=1e-5) and 0 < acc < 1
    assert count == (len(task.streams["val"]) // 3 - 1) * 3  # every column's tokens but its first


def test_a_folder_run_reports_valid_and_test_perplexity_over_the_whole_stream(tmp_path):
    folder = write_corpus(tmp_path / "wt", test="the game began well .\n" * 30)
    for stream in ("false", "true"):
        cfg = compose_cfg(
            [
                "device=cpu",
                "train.threads=1",
                "model=lstm",
                "data=text",
                "data.tokenizer=whitespace",
                f"data.path={folder}",
                "data.seq_len=8",
                f"data.stream={stream}",
                "train.steps=6",
                "train.eval_every=3",
                "train.eval_batches=1",
                "train.batch_size=4",
                f"out_dir={tmp_path / stream}",
            ]
        )
        s = train(cfg)
        assert s["status"] == "complete", s
        for split in ("val", "test"):
            assert s[f"{split}_stream_ppl"] == pytest.approx(math.exp(s[f"{split}_stream_loss"]))
        record = json.loads((Path(s["run_dir"]) / "run.json").read_text())
        assert record["stream"] == {"batches": stream == "true", "state_carried": stream == "true"}
        if stream == "true":  # the last evaluation is the whole valid stream itself
            assert s["val_loss"] == pytest.approx(s["val_stream_loss"])


# --- the classic recipe: SGD, plateau annealing --------------------------------------------------
def test_plateau_annealing_divides_the_lr_after_every_evaluation_without_a_new_best(make_cfg):
    s = train(
        make_cfg(
            *SMALL_POOL,
            "train.steps=150",
            "train.eval_every=10",
            "train.log_every=5",
            "train.warmup=0",
            "train.min_lr_frac=1.0",
            "train.plateau_factor=4",
        )
    )
    lr, best, anneals, expected = 3e-3, math.inf, 0, []
    for r in _rows(s["run_dir"]):  # the lr a row logs follows from the held-out losses before it
        expected.append((float(r["lr"]), lr / 4**anneals))
        if r["val_loss"]:
            loss = float(r["val_loss"])
            best, anneals = (loss, anneals) if loss < best else (best, anneals + 1)
    logged, wanted = zip(*expected)
    assert logged == pytest.approx(wanted)
    assert s["lr_anneals"] == anneals >= 1


def _rows(run_dir):
    import csv

    with open(Path(run_dir) / "metrics.csv") as f:
        return list(csv.DictReader(f))


# --- every size knob in run.json ----------------------------------------------------------------
def test_every_constructor_argument_of_every_model_is_recorded_as_built():
    import inspect

    from hydra.utils import get_class

    from seqbench.models import SequenceModel

    for name, node in model_configs().items():
        model = build_model(node, 11, "cpu")
        recorded = describe_model(model, node)["model_hparams"]
        own = inspect.signature(get_class(node._target_)).parameters.values()
        params = {p.name for p in own if p.kind is not p.VAR_KEYWORD} - {"vocab_size"}
        if any(p.kind is p.VAR_KEYWORD for p in own):  # **shape: SequenceModel's size keys
            params |= set(inspect.signature(SequenceModel).parameters)
        assert params <= set(recorded), (name, params - set(recorded))


def test_the_size_knobs_reach_the_model_and_run_json(make_cfg):
    lstm = train(
        make_cfg(
            "model=lstm",
            "model.d_embed=24",
            "model.dropout=0.1",
            "train.steps=2",
            "train.eval_every=2",
            "train.eval_batches=1",
        )
    )
    tf = train(
        make_cfg(
            "model=transformer",
            "model.d_ff=48",
            "model.n_heads=2",
            "model.dropout=0.1",
            "train.steps=2",
            "train.eval_every=2",
            "train.eval_batches=1",
        )
    )
    rec = {
        k: json.loads((Path(s["run_dir"]) / "run.json").read_text())
        for k, s in (("lstm", lstm), ("tf", tf))
    }
    assert (
        rec["lstm"]["model_hparams"].items()
        >= {"d_embed": 24, "d_model": 80, "dropout": 0.1}.items()
    )
    assert rec["tf"]["model_hparams"].items() >= {"d_ff": 48, "n_heads": 2, "dropout": 0.1}.items()
    state = torch.load(Path(tf["run_dir"]) / "model.pt", weights_only=True)
    assert state["blocks.0.mlp.0.weight"].shape == (48, 64)  # built with them, not just recorded
    state = torch.load(Path(lstm["run_dir"]) / "model.pt", weights_only=True)
    assert state["embed.weight"].shape[1] == 24 and state["rnn.weight_ih_l0"].shape[1] == 24
