"""Synthetic what=protocols rows for this study's figure tests (tests/figure_tables.py merges
each study's ``tables(kit)`` over the shared synthetic tables; ``kit`` is that module): every
stream run of the shared tables scored under both protocols on the test split, each arm a
little better under the protocol it was trained with (the shape issue 22 expects)."""

from seqbench.studies._common import study_of

STUDY = study_of(__package__)
HOME = {"random": "windows", "stream": "stream"}  # the protocol each arm was trained with
# the stdlib corpus's test split: 1,024 windows of 64, or its whole stream in 32 columns
TOKENS = {"windows": 65_536, "stream": 167_936}


def tables(kit) -> dict:
    runs = kit.training_tables([(STUDY, "text", ["lstm"], {"data.stream": [False, True]})])
    rows = []
    for _, run in runs["runs"].iterrows():
        arm = "stream" if run["data.stream"] else "random"
        for protocol in HOME.values():
            home = -0.05 if HOME[arm] == protocol else 0.0
            rows.append(
                {"model": run.model, "family": run.family, "seed": run.seed, "arm": arm,
                 "split": "test", "protocol": protocol,
                 "loss": run.val_loss + home + kit.jitter(run.run, protocol),
                 "tokens": TOKENS[protocol], "state_carried": protocol == "stream",
                 "train_run": run.run}
            )  # fmt: skip
    table = kit.measured(STUDY, rows, task="text")
    return {"protocols": table.assign(run=lambda t: "protocols-" + t.train_run)}
