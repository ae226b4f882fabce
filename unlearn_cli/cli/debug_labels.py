"""unlearn debug-labels: rank training records by how likely their label is wrong.

Examples:
    unlearn debug-labels model.safetensors
    unlearn debug-labels model.safetensors --top 50 --out suspects.txt --out-table issues.csv
    unlearn forget model.safetensors suspects.txt --method puma        # then drop them
    unlearn debug-labels model.safetensors --ranker self-confidence --json > ranking.json
    unlearn debug-labels --evaluate sample_models/moons/manifest.yaml --flip-rate 0.1 --seed 0
    unlearn debug-labels --evaluate sample_models/radial/manifest.yaml --ranker puma --ranker grad-dot --report eval.json

Rankers: loo (default: out-of-sample evidence without training k models, the
exact leave-one-out margin of a Gaussian-kernel smoother of the given labels on
the inputs the model reads; diagnostics/loo.py), puma (Algorithm 2 of the PUMA
paper: influence of each record on the criterion C from one cached iHVP and one
forward-mode pass, filtered by prediction confidence, its direction read off
the model's least confident records), puma-paper (Algorithm 2 exactly as
listed: most negative psi first), self-confidence, margin, grad-dot (the
paper's "NTK": the Hessian replaced by the identity), influence (Koh & Liang
self-influence, one iHVP per record; slow, for small models) and kfold
(cleanlab's recipe: --folds models of the checkpoint's recipe, out-of-fold
probabilities; costs that many trainings). The table shows the --top K most
suspicious records; --out writes their IDs (most suspicious first) as an ids
file for `unlearn forget` or for relabelling. --out-table writes every train
record (.csv or .json by extension): id, given label, predicted label,
suggested label, score, p(given), issue yes/no. Like --out, it is an export of
record IDs that you asked for by name; nothing else the command writes (the
--report included) holds more IDs than the --top rows. The summary estimates
how many labels are wrong (confident-joint count on the ranker's
out-of-sample probabilities when it has them); the issue column marks that
many records from the top of the ranking.

--evaluate MANIFEST runs the paper's Figure 4 / Table 3 protocol instead: it
flips --flip-rate of the train labels of an in-memory copy (your files are
never modified), trains the manifest's default recipe (mlp; cnn for image
input), and reports for each --ranker (repeatable; default all) the share of
flipped records found after inspecting 5, 10, 20, 30 and 50% of the data,
beside the optimal and random curves, and each ranker's seconds (kfold runs
only when named: it trains --folds models).

An existing --out (or --report) is refused unless --force is given; --out may
not be the checkpoint, its sidecars, the manifest or its data file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from unlearn_cli.cli.options import (
    DAMPING_DEFAULT, SOLVER_DEFAULT, DampingOpt, DataOpt, DebugOpt, DeviceOpt, ForceOpt, JsonOpt, QuietOpt, ReportOpt,
    SeedOpt, SolverOpt,
)
from unlearn_cli.cli.output import command_run, fmt, keep_whole, key_values, show

DEFAULT_TOP = 20


def debug_labels(
    checkpoint: Annotated[Optional[Path], typer.Argument(
        help="Checkpoint to debug (.safetensors); omit with --evaluate.", metavar="CKPT")] = None,
    data: DataOpt = None,
    top: Annotated[Optional[int], typer.Option(
        "--top", "-k", metavar="K", help=f"Records to show and write (default {DEFAULT_TOP}); also Algorithm 2's k. "
                            "With --evaluate: Algorithm 2's k (default: the number of flipped records).")] = None,
    ranker: Annotated[Optional[List[str]], typer.Option(
        "--ranker", "-r", metavar="NAME",
        help="Ranking method: loo (default), puma, puma-paper, self-confidence, margin, grad-dot, influence, "
             "kfold. Repeatable with --evaluate (default: all but kfold).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", metavar="FILE", help="Write the top K ids (most suspicious first) to this ids file.")] = None,
    out_table: Annotated[Optional[Path], typer.Option(
        "--out-table", metavar="FILE.csv|FILE.json",
        help="Write every train record's id, given and predicted label, score and issue yes/no (.csv or .json).")] = None,
    folds: Annotated[int, typer.Option(
        "--folds", metavar="K", help="kfold ranker: models trained, each without one fold (2-20).")] = 5,
    criterion: Annotated[str, typer.Option(
        "--criterion", metavar="accuracy|cross-entropy|ece", help="C for puma and grad-dot: accuracy (soft error, default), cross-entropy or ece.")] = "accuracy",
    solver: SolverOpt = SOLVER_DEFAULT,
    damping: DampingOpt = DAMPING_DEFAULT,
    evaluate: Annotated[Optional[Path], typer.Option(
        "--evaluate", metavar="MANIFEST",
        help="Run the flipped-label evaluation protocol on this manifest instead of ranking a checkpoint.")] = None,
    flip_rate: Annotated[Optional[float], typer.Option(
        "--flip-rate", metavar="RATE", help="With --evaluate: share of train labels flipped to another class (default 0.1).")] = None,
    epochs: Annotated[Optional[int], typer.Option(
        "--epochs", metavar="N", help="With --evaluate: override the default recipe's epochs.")] = None,
    force: ForceOpt = False,
    report: ReportOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Rank training records by how likely their label is wrong (leave-one-out, PUMA Algorithm 2, baselines).

    \b
    Examples:
      unlearn debug-labels model.safetensors --top 50 --out suspects.txt
      unlearn debug-labels model.safetensors --out-table issues.csv
      unlearn debug-labels model.safetensors --ranker self-confidence --json
      unlearn debug-labels --evaluate sample_models/moons/manifest.yaml \\
          --flip-rate 0.1 --seed 0

    With --evaluate: flip labels of an in-memory copy of the train split, train
    the default recipe, and report the share of flips found after inspecting
    5-50% of the data for each ranker, beside the optimal and random curves.

    The default ranker (loo) finds flipped labels without training k models;
    --ranker kfold is cleanlab's recipe (k trainings). On a 2-core CPU: a few
    seconds on breast-cancer; the puma ranker on mnist-5k about 30 s.
    """
    with command_run("debug-labels", report=report, json_out=json_out, quiet=quiet, debug=debug,
                     force=force) as run:
        run.preload("torch", "unlearn_cli.influence.engine")  # timed as startup_s, outside total_s
        from unlearn_cli.diagnostics.rankers import RANKERS, RankSettings, check_ranker
        from unlearn_cli.errors import BadInput
        from unlearn_cli.influence.criteria import get_criterion
        from unlearn_cli.influence.solvers.base import check_solver
        from unlearn_cli.training.loop import resolve_device

        if (checkpoint is None) == (evaluate is None):
            raise BadInput("give either a CHECKPOINT to debug or --evaluate MANIFEST, not "
                           + ("both" if checkpoint is not None else "neither"))
        rankers = list(ranker or ([] if evaluate is not None else ["loo"])) or [
            name for name, about in RANKERS.items() if not about.costly]
        for name in rankers:
            check_ranker(name)
        if len(set(rankers)) != len(rankers):
            raise BadInput("--ranker lists the same ranker twice")
        if top is not None and top < 1:
            raise BadInput(f"--top must be >= 1, got {top}")
        get_criterion(criterion)
        check_solver(solver)
        if damping < 0:
            raise BadInput(f"--damping must be >= 0, got {damping}")
        dev = resolve_device(device)
        settings = RankSettings(criterion=criterion, solver=solver, damping=damping, folds=folds)
        if evaluate is not None:
            if out is not None or out_table is not None:
                raise BadInput(f"{'--out' if out is not None else '--out-table'} writes a checkpoint's suspects; "
                               "it does not apply to --evaluate")
            if data is not None:
                raise BadInput("--data goes with a CHECKPOINT; --evaluate takes the manifest itself")
            _evaluate(run, evaluate, rankers, 0.1 if flip_rate is None else flip_rate, 0 if seed is None else seed,
                      epochs, top, settings, dev)
            return
        if len(rankers) > 1:
            raise BadInput("--ranker may repeat only with --evaluate; rank a checkpoint with one ranker at a time")
        for name, value in (("--flip-rate", flip_rate), ("--epochs", epochs)):
            if value is not None:
                raise BadInput(f"{name} applies to --evaluate only")
        if out_table is not None and out_table.suffix.lower() not in (".csv", ".json"):
            raise BadInput(f"--out-table must end in .csv or .json, got '{out_table.name}'")
        run.output_checked("--out", out)
        run.output_checked("--out-table", out_table)
        outputs = [("--out", out), ("--out-table", out_table)]
        run.claim([("input checkpoint", checkpoint), ("--data manifest", data)], outputs)
        _rank(run, checkpoint, data, rankers[0], top or DEFAULT_TOP, outputs, settings, seed, dev)


def _rank(run, checkpoint: Path, data: Optional[Path], ranker: str, top: int, outputs: list[tuple[str, Any]],
          settings: Any, seed: Optional[int], dev: Any) -> None:
    from dataclasses import replace

    from unlearn_cli.data.ids import format_ids
    from unlearn_cli.diagnostics.labels import rank
    from unlearn_cli.diagnostics.rankers import RANKERS
    from unlearn_cli.ops.atomic import write_text
    from unlearn_cli.models.datasets import open_checkpoint

    with run.phase("load"):
        ckpt, dataset = open_checkpoint(checkpoint, data)
    run.input("checkpoint", ckpt.path, ckpt.sha256)
    run.input("data", dataset.data_path, dataset.data_sha256)
    run.claim(_inputs(ckpt, dataset), outputs)
    out, out_table = (path for _, path in outputs)
    seed = int(seed if seed is not None else ckpt.training.get("seed", 0))
    settings = replace(settings, k=top, seed=seed)
    about = RANKERS[ranker]
    run.data["config"] = {"ranker": ranker, "top": top, "seed": seed, "device": str(dev),
                          "settings": settings.reported() if about.needs_plain else {}}
    if about.costly:
        run.data["config"]["folds"] = settings.folds
    with run.phase("rank"):
        with run.progress(ranker) as bar:
            ranking = rank(ranker, ckpt, dataset, device=dev, settings=settings, progress=bar)
    shown = ranking.order[:top]
    rows = ranking.rows[shown]
    suspects = [{
        "rank": i + 1,
        "id": dataset.ids[row],
        "label": int(dataset.y[row]),
        "predicted": int(ranking.predicted[pos]),
        "score": float(ranking.score[pos]),
        "confidence": float(ranking.confidence[pos]),
    } for i, (pos, row) in enumerate(zip(shown, rows))]
    if out is not None:
        header = (f"unlearn debug-labels: top {len(suspects)} of {len(ranking.rows)} train records of "
                  f"{dataset.name} by {ranker}, most suspicious first\ncheckpoint {ckpt.path.name} "
                  f"sha256 {ckpt.sha256}")
        with run.phase("write"):
            digest = write_text(out, format_ids([s["id"] for s in suspects], header=header))
        run.output("ids", out, digest)
    estimate = ranking.estimate(dataset.y)
    if out_table is not None:
        from unlearn_cli.diagnostics.table import issue_table

        with run.phase("write"):
            run.output("table", out_table, write_text(out_table, issue_table(ranking, dataset, estimate["issue"],
                                                                             out_table.suffix.lower())))
    run.data["metrics"] = {
        "ranker": ranker,
        "n_train": int(len(ranking.rows)),
        "score": {"meaning": about.score, "most_suspicious": "lowest" if about.ascending else "highest"},
        "seconds": ranking.seconds,
        "top": suspects,
        "top_predicted_otherwise": int(sum(s["label"] != s["predicted"] for s in suspects)),
        "estimated_wrong": {k: v for k, v in estimate.items() if k != "issue"},
        "details": ranking.info,
    }
    show(run, _suspects_table(f"top {len(suspects)} of {len(ranking.rows)} train records of {dataset.name} "
                              f"by {ranker}", suspects, about, ranking.info),
         key_values("summary", _summary(ranker, ranking, out, estimate, out_table)))


def _inputs(ckpt: Any, dataset: Any) -> list[tuple[str, Any]]:
    """What a run on a checkpoint reads, for the output-path checks."""
    from unlearn_cli.ops.paths import sidecars_of

    return [("input checkpoint", ckpt.path), *sidecars_of(ckpt.path, ckpt.sha256),
            ("manifest", dataset.manifest_path), ("data file", dataset.data_path)]


def _suspects_table(title: str, suspects: list[dict[str, Any]], about: Any, info: dict[str, Any]):
    from rich.table import Table

    selected = (info.get("algorithm2") or {}).get("selected", 0)
    table = Table(title=title, title_justify="left", caption_justify="left")
    for name in ("#", "id", "given label", "predicted", about.score, "p(given)"):
        table.add_column(name, justify="left" if name == "id" else "right")
    for s in suspects:
        mark = " *" if s["rank"] <= selected else ""
        style = "bold" if s["label"] != s["predicted"] else None
        table.add_row(f"{s['rank']}{mark}", s["id"], str(s["label"]), str(s["predicted"]), f"{s['score']:.4g}",
                      fmt(s["confidence"]), style=style)
    notes = ["bold: the model predicts another class"]
    if selected:
        notes.append("*: Algorithm 2's set S")
    table.caption = "; ".join(notes)
    keep_whole(table)
    table.columns[1].min_width = min(24, max((len(s["id"]) for s in suspects), default=2))  # an id stays whole
    return table


def _summary(ranker: str, ranking: Any, out: Optional[Path], estimate: dict[str, Any],
             out_table: Optional[Path]) -> dict[str, Any]:
    rows: dict[str, Any] = {"ranker": ranker, "records ranked": len(ranking.rows),
                            "time (s)": round(ranking.seconds, 3),
                            "labels estimated wrong": f"{estimate['count']} ({estimate['share']:.1%}; "
                                                      f"{estimate['probabilities'].split(' ')[0]})"}
    if "criterion" in ranking.info:
        rows["criterion C"] = ranking.info["criterion"]
    engine = ranking.info.get("engine")
    if engine:
        rows["solver"] = engine["solver"]
        rows["damping"] = engine["damping"]
    a2 = ranking.info.get("algorithm2")
    if a2:
        rows["Algorithm 2"] = (f"k={a2['k']}, candidates {a2['candidates']}, "
                               f"check {'passed' if a2['check_passed'] else 'failed' if a2['check_passed'] is False else 'n/a'}"
                               f", S = {a2['selected']}")
    orientation = ranking.info.get("orientation")
    if orientation:
        rows["direction"] = orientation["direction"]
    if out is not None:
        rows["ids file"] = str(out)
    if out_table is not None:
        rows["table"] = str(out_table)
    return rows


def _evaluate(run, manifest: Path, rankers: list[str], flip_rate: float, seed: int, epochs: Optional[int],
              top: Optional[int], settings: Any, dev: Any) -> None:
    from unlearn_cli.data.manifest import load_manifest
    from unlearn_cli.diagnostics.labels import default_arch, evaluate

    with run.phase("load"):
        dataset = load_manifest(manifest)
    run.input("manifest", dataset.manifest_path, None)
    run.input("data", dataset.data_path, dataset.data_sha256)
    run.claim([("manifest", dataset.manifest_path), ("data file", dataset.data_path)], [])
    run.data["config"] = {"mode": "evaluate", "rankers": rankers, "flip_rate": flip_rate, "seed": seed,
                          "arch": default_arch(dataset), "epochs": epochs, "k": top, "device": str(dev),
                          "settings": settings.reported()}
    with run.phase("evaluate"), run.progress() as bar:
        result = evaluate(dataset, rankers, flip_rate=flip_rate, seed=seed, device=dev, epochs=epochs, k=top,
                          settings=settings, progress=bar)
    run.data["metrics"] = result
    show(run, _curves_table(result), key_values("evaluation", {
        "data set": result["dataset"], "train records": result["n_train"], "flipped": result["flipped"],
        "model": f"{result['arch']['name']}, {result['recipe']['epochs']} epochs, {result['train_s']:.1f} s",
        "test accuracy (clean labels)": result["model"]["test_accuracy"],
        "flipped records the model fits": result["model"]["flipped_fitted"],
        "Algorithm 2 k": result["k"],
    }))


def _curves_table(result: dict[str, Any]):
    from rich.table import Table

    table = Table(title=f"share of flipped labels found vs share of {result['dataset']} inspected",
                  title_justify="left")
    table.add_column("ranker")
    for f in result["fractions"]:
        table.add_column(f"{f:.0%}", justify="right")
    table.add_column("seconds", justify="right")
    for name, values in result["rankers"].items():
        table.add_row(name, *(f"{v:.2f}" for v in values["found"]), f"{values['seconds']:.2f}")
    table.add_row("optimal", *(f"{v:.2f}" for v in result["optimal"]), "", style="dim")
    table.add_row("random", *(f"{v:.2f}" for v in result["random"]), "", style="dim")
    return keep_whole(table)
