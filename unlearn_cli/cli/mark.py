"""unlearn mark: choose training records to forget and write them as an ids file.

Examples:
    unlearn mark sample_models/radial/manifest.yaml --strategy cluster --label 0 --out forget-ids.txt
    unlearn mark sample_models/moons/manifest.yaml --strategy random --count 20 --seed 3 --out forget-ids.txt
    unlearn mark sample_models/radial/manifest.yaml --strategy cluster --clusters 8 --pick smallest --seed 3 \\
        --out forget-ids.txt
    unlearn mark sample_models/mnist-5k/manifest.yaml --strategy class --label 2 --out forget-ids.txt
    unlearn mark sample_models/moons/manifest.yaml --strategy ordered --fraction 0.05 \\
        --checkpoint sample_models/moons/model.safetensors --out forget-ids.txt

Strategies (PUMA paper, appendix A and the Ordered/Random scenarios):
cluster marks one k-means cluster per class (or of --label); random a
--fraction or --count of the train split; class every train record of --label; ordered
records packed into as few recorded training batches (or SISA shards/slices)
as the checkpoint's training order allows. Only train records are marked.
An existing --out (or --report) is refused unless --force is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from unlearn_cli.cli.options import DebugOpt, ForceOpt, JsonOpt, LedgerKeyOpt, QuietOpt, ReportOpt, SeedOpt
from unlearn_cli.cli.output import command_run, key_values, show


def mark(
    manifest: Annotated[Path, typer.Argument(metavar="MANIFEST", help="Dataset manifest (YAML).")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="IDS", help="Ids file to write.")],
    strategy: Annotated[str, typer.Option("--strategy", help="How to choose (see Strategies above).",
                                          metavar="cluster|random|class|ordered")],
    label: Annotated[Optional[int], typer.Option(
        "--label", metavar="L", help="Class to mark (class; restricts cluster/random).")] = None,
    fraction: Annotated[Optional[float], typer.Option(
        "--fraction", metavar="F", help="Share of the train split, 0 < F <= 1 (random, ordered).")] = None,
    count: Annotated[Optional[int], typer.Option(
        "--count", metavar="N", help="Number of train records, instead of --fraction (random, ordered).")] = None,
    clusters: Annotated[Optional[int], typer.Option(
        "--clusters", metavar="K", help="k-means clusters per class (cluster; default 8, the paper's).")] = None,
    pick: Annotated[Optional[str], typer.Option(
        "--pick", metavar="WHICH",
        help="Cluster to mark: smallest (the paper's, default), largest, median, or a rank (0 = smallest).")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(
        "--checkpoint", metavar="CKPT", help="Checkpoint whose recorded training order 'ordered' follows.")] = None,
    ledger_key: LedgerKeyOpt = None,
    force: ForceOpt = False,
    report: ReportOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    seed: SeedOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Choose training records to forget (PUMA appendix A marking) and write an ids file.

    \b
    Examples:
      unlearn mark sample_models/radial/manifest.yaml --strategy cluster --label 0 --out forget-ids.txt
      unlearn mark sample_models/moons/manifest.yaml --strategy random --count 20 --seed 3 --out forget-ids.txt
      unlearn mark sample_models/moons/manifest.yaml --strategy class --label 1 --out forget-ids.txt

    \b
    Strategies (PUMA paper, appendix A and the Ordered/Random scenarios):
      cluster  one k-means cluster per class, or of --label (--clusters, --pick)
      random   --fraction F or --count N train records, drawn with --seed
      class    every train record of --label
      ordered  records packed into as few recorded training batches (or SISA
               shards/slices) as --checkpoint's training order allows

    Only train records are marked. An existing --out is refused unless --force is given.
    """
    with command_run("mark", report=report, json_out=json_out, quiet=quiet, debug=debug, force=force) as run:
        run.output_checked("--out", out)
        run.claim([("manifest", manifest), ("--checkpoint", checkpoint)], [("--out", out)])
        from unlearn_cli.data.ids import format_ids
        from unlearn_cli.data.manifest import load_manifest
        from unlearn_cli.marking.strategies import mark as choose
        from unlearn_cli.ops.atomic import write_text
        from unlearn_cli.ops.digests import resolve_key

        with run.phase("load"):
            dataset = load_manifest(manifest)
        run.input("manifest", dataset.manifest_path, None)
        run.input("data", dataset.data_path, dataset.data_sha256)
        meta = None
        if checkpoint is not None:
            from unlearn_cli.models.checkpoint import read_header_meta

            header = read_header_meta(checkpoint)  # metadata only: no weights, no torch
            meta = header["meta"]
            run.input("checkpoint", checkpoint, header["sha256"])
        run.claim([("manifest", dataset.manifest_path), ("data file", dataset.data_path), ("--checkpoint", checkpoint)],
                  [("--out", out)])
        with run.phase("mark"):
            marking = choose(dataset, strategy, label=label, fraction=fraction, count=count, clusters=clusters,
                             pick=pick,
                             seed=0 if seed is None else seed, checkpoint_meta=meta,
                             key=resolve_key(ledger_key) if meta is not None else None)
        text = format_ids(marking.ids, header=marking.header(dataset))
        with run.phase("write"):
            digest = write_text(out, text)
        run.output("ids", out, digest)
        metrics = marking.metrics(dataset)
        run.data["config"] = {"strategy": strategy, **marking.params}
        run.data["metrics"] = metrics
        show(run, key_values(f"marked {metrics['marked']} of {metrics['n_train']} train records of {dataset.name}", {
            "ids file": str(out), "strategy": strategy,
            **{k: v for k, v in marking.params.items() if v is not None},
            "per class": ", ".join(f"{label}: {n}" for label, n in metrics["per_class"].items()),
            **{k: v for k, v in marking.details.items() if not isinstance(v, dict)},
        }))
