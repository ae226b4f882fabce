#!/usr/bin/env python3
"""How close is each iHVP solver to the exact solve on the mnist-5k cnn, and what does it cost?

Protocol (issue #11, "a large-model direction worth following"):

* the exact reference: the dense damped GGN over every train record plus the
  recipe's weight decay, solved by a float64 Cholesky factor. The GGN is
  computed once and cached under ``benchmarks/.cache/`` (keyed by the
  checkpoint's sha256), each damping's exact v and Phi beside it;
* v = (H + dI)^-1 grad C with C the mean cross-entropy over the train split
  (the engine's default v); Phi = (H + dI)^-1 b for a seeded 100-record
  request with lambda = 0, i.e. b = sum of the request's loss gradients
  (``influence.scores.weighted_grad``);
* every solver is built cold on all train records as the engine builds it, at
  the dampings 1e-3, 1e-2, 1e-1, 1; reported: cosine and relative error of v
  and Phi to the exact ones, the solver's own true residual and converged
  flag, build time, per-solve time (medians of repeats, solver order rotated
  each repeat), and pcg's warm build (cached factors + operator records);
* an independent check: curvlinops' GGN operator (products against our dense
  matrix) and a scipy CG solve on it at one damping, against the exact v.

Usage:
    nice python benchmarks/solver_accuracy.py                  # all dampings, 3 repeats
    nice python benchmarks/solver_accuracy.py --dampings 1e-2 --repeats 1
Writes benchmarks/results/solver_accuracy.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from unlearn_cli.data.tensors import tensors  # noqa: E402
from unlearn_cli.influence.criteria import Objective, get_criterion  # noqa: E402
from unlearn_cli.influence.curvature import dense_ggn  # noqa: E402
from unlearn_cli.influence.scores import FunctionalModel, criterion_grad, weighted_grad  # noqa: E402
from unlearn_cli.influence.solvers.base import CurvatureSettings, build_solver, operator_positions  # noqa: E402
from unlearn_cli.models.datasets import open_checkpoint  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / "benchmarks" / ".cache"
SOLVERS = ("pcg", "ekfac", "kfac", "cg")
#: cg to 1e-3 (its default 1e-8 is below float32's reach here: it would stall there), at most 50 products
OVERRIDES = {"cg": {"cg_tol": 1e-3, "cg_maxiter": 50}}


class Problem:
    """The model, the curvature records, grad C, the request's b and the exact solves."""

    def __init__(self, checkpoint: Path, request: int, seed: int):
        self.path = checkpoint
        ckpt, dataset = open_checkpoint(checkpoint)
        self.sha256 = ckpt.sha256
        self.weight_decay = float(ckpt.training.get("weight_decay", 0.0))
        self.model = ckpt.build_model(torch.device("cpu"))
        self.fmodel = FunctionalModel.of(self.model)
        rows = dataset.train_indices()
        self.x, self.y = tensors(dataset, rows)
        _, self.grad_c = criterion_grad(self.fmodel, get_criterion("cross-entropy"), self.x, self.y)
        picked = np.sort(np.random.default_rng(seed).choice(len(rows), size=request, replace=False))
        self.request, self.seed = picked, seed
        self.b = weighted_grad(self.fmodel, Objective(self.weight_decay), self.x[picked], self.y[picked],
                               torch.ones(request))
        self._ggn: torch.Tensor | None = None

    def ggn(self) -> torch.Tensor:
        path = CACHE / f"ggn-{self.sha256[:16]}.safetensors"
        if self._ggn is None and path.exists():
            self._ggn = load_file(str(path))["ggn"]
        if self._ggn is None:
            t0 = time.perf_counter()
            self._ggn = dense_ggn(self.fmodel, self.x)
            print(f"dense GGN: {time.perf_counter() - t0:.0f} s", flush=True)
            CACHE.mkdir(parents=True, exist_ok=True)
            save_file({"ggn": self._ggn}, str(path))
        return self._ggn

    def exact(self, damping: float) -> dict[str, torch.Tensor]:
        """The exact v and Phi at ``damping`` (float64), cached by checkpoint, damping and request."""
        path = CACHE / f"exact-{self.sha256[:16]}-d{damping:g}-r{len(self.request)}s{self.seed}.safetensors"
        if path.exists():
            return load_file(str(path))
        A = self.ggn().clone()
        A.diagonal().add_(self.weight_decay + damping)
        factor = torch.linalg.cholesky(A)
        del A
        B = torch.stack([self.grad_c, self.b], 1).double()
        v, phi = torch.cholesky_solve(B, factor).T
        out = {"v": v.contiguous(), "phi": phi.contiguous()}
        save_file(out, str(path))
        return out


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float(a @ b / (a.norm() * b.norm()))


def rel_error(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.double() - ref).norm() / ref.norm())


def settings_for(name: str, damping: float, weight_decay: float) -> CurvatureSettings:
    return CurvatureSettings(solver=name, damping=damping, weight_decay=weight_decay, **OVERRIDES.get(name, {}))


def run_solver(problem: Problem, name: str, damping: float) -> dict:
    """One cold build and the two solves; for pcg also the warm build the engine does on a cache hit."""
    settings = settings_for(name, damping, problem.weight_decay)
    t0 = time.perf_counter()
    solver = build_solver(settings, problem.fmodel, problem.x, problem.y)
    out = {"build_s": time.perf_counter() - t0}
    for what, rhs in (("v", problem.grad_c), ("phi", problem.b)):
        t0 = time.perf_counter()
        out[what] = solver.solve(rhs)
        out[f"{what}_solve_s"] = time.perf_counter() - t0
        out[f"{what}_info"] = dict(solver.info)
    if getattr(solver, "operator_sample_field", None):
        keep = operator_positions(len(problem.x), getattr(settings, solver.operator_sample_field), settings.seed)
        t0 = time.perf_counter()
        warm = build_solver(settings, problem.fmodel, problem.x[keep], problem.y[keep], cached=solver.state())
        out["warm_build_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm.solve(problem.b)
        out["warm_phi_solve_s"] = time.perf_counter() - t0
    return out


def measure(problem: Problem, damping: float, repeats: int, solvers: tuple[str, ...]) -> dict:
    """Every solver at one damping: accuracy of its last repeat, medians of the times."""
    exact = problem.exact(damping)
    runs: dict[str, list[dict]] = {name: [] for name in solvers}
    for r in range(repeats):
        order = solvers[r % len(solvers):] + solvers[:r % len(solvers)]
        for name in order:
            runs[name].append(run_solver(problem, name, damping))
            print(f"damping {damping:g} repeat {r + 1}: {name} done", flush=True)
    table = {}
    for name, rs in runs.items():
        last = rs[-1]
        row = {"cos_v": cosine(last["v"], exact["v"]), "cos_phi": cosine(last["phi"], exact["phi"]),
               "relerr_v": rel_error(last["v"], exact["v"]), "relerr_phi": rel_error(last["phi"], exact["phi"])}
        for key in ("build_s", "v_solve_s", "phi_solve_s", "warm_build_s", "warm_phi_solve_s"):
            if key in last:
                row[key] = statistics.median(x[key] for x in rs)
        for what in ("v", "phi"):
            info = last[f"{what}_info"]
            row.update({f"{what}_{k}": info[k] for k in ("solver_residual", "solver_converged",
                                                         "solver_iterations", "solver_stop") if k in info})
        table[name] = row
    return table


def curvlinops_check(problem: Problem, damping: float) -> dict:
    """curvlinops' GGN products against our dense matrix, and a scipy CG solve on its operator."""
    from curvlinops import GGNLinearOperator
    from scipy.sparse.linalg import LinearOperator, cg

    params = [p for p in problem.model.parameters() if p.requires_grad]
    data = [(problem.x[i:i + 1000], problem.y[i:i + 1000]) for i in range(0, len(problem.x), 1000)]
    G = GGNLinearOperator(problem.model, torch.nn.CrossEntropyLoss(), params, data, check_deterministic=False)
    probe = torch.randn(problem.fmodel.size, generator=torch.Generator().manual_seed(1))
    ours = problem.ggn() @ probe.double()
    theirs = (G @ probe).double()
    d = problem.weight_decay + damping
    op = LinearOperator((problem.fmodel.size,) * 2, dtype=np.float64,
                        matvec=lambda v: (G @ torch.from_numpy(np.asarray(v).ravel()).float()).double().numpy() + d * v)
    t0 = time.perf_counter()
    sol, status = cg(op, problem.grad_c.double().numpy(), rtol=1e-3, maxiter=50)
    exact = problem.exact(damping)["v"]
    return {"damping": damping, "ggn_product_relerr": rel_error(theirs, ours), "scipy_cg_status": int(status),
            "scipy_cg_s": time.perf_counter() - t0, "cos_v": cosine(torch.from_numpy(sol), exact),
            "relerr_v": rel_error(torch.from_numpy(sol), exact)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "sample_models" / "mnist-5k" / "model.safetensors")
    parser.add_argument("--dampings", type=float, nargs="+", default=[1e-3, 1e-2, 1e-1, 1.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--request", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--solvers", nargs="+", default=list(SOLVERS))
    parser.add_argument("--cg-dampings", type=float, nargs="*", default=[1.0],
                        help="dampings at which plain cg runs (each product is a pass over every train record)")
    parser.add_argument("--curvlinops-damping", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "solver_accuracy")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    problem = Problem(args.checkpoint, args.request, args.seed)
    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "checkpoint": {"path": str(args.checkpoint.relative_to(REPO)) if args.checkpoint.is_relative_to(REPO)
                       else str(args.checkpoint), "sha256": problem.sha256, "parameters": problem.fmodel.size,
                       "train_records": len(problem.x), "weight_decay": problem.weight_decay},
        "request": {"records": args.request, "seed": args.seed},
        "defaults": {name: {k: getattr(settings_for(name, 0.0, 0.0), k) for k in keys}
                     for name, keys in (("pcg", ("pcg_sample", "pcg_tol", "pcg_maxiter", "ekfac_sample")),
                                        ("cg", ("cg_tol", "cg_maxiter")))},
        "dampings": {},
    }
    for damping in args.dampings:
        solvers = tuple(s for s in args.solvers if s != "cg" or damping in args.cg_dampings)
        result["dampings"][f"{damping:g}"] = measure(problem, damping, args.repeats, solvers)
    if args.curvlinops_damping > 0:
        result["curvlinops"] = curvlinops_check(problem, args.curvlinops_damping)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(render(result))
    print(render(result))


def render(r: dict) -> str:
    m, c = r["machine"], r["checkpoint"]
    lines = [
        "# iHVP solver accuracy and cost (mnist-5k cnn)", "",
        f"Command: `{r['command']}`  ",
        f"Machine: {m['platform']}, {m['cpus']} CPUs ({m['torch_threads']} torch threads), torch {m['torch']}  ",
        f"Checkpoint: `{c['path']}` ({c['parameters']} parameters, {c['train_records']} train records, "
        f"weight decay {c['weight_decay']:g}); request: {r['request']['records']} records (seed "
        f"{r['request']['seed']}), lambda = 0.  ",
        f"Defaults: pcg {r['defaults']['pcg']}; cg {r['defaults']['cg']}.", "",
        "Cosine to the exact dense float64 solve (GGN over every train record + weight decay + damping); "
        "times are medians over repeats (seconds). `residual` is the solver's own true relative residual "
        "(pcg: on its operator sample; kfac/ekfac report none).", "",
        "| damping | solver | cos v | cos Phi | rel.err v | rel.err Phi | residual v / Phi | converged | "
        "iterations v / Phi | build s | solve v s | solve Phi s | warm build s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for damping, table in r["dampings"].items():
        for name, row in table.items():
            res = " / ".join("-" if row.get(f"{w}_solver_residual") is None else f"{row[f'{w}_solver_residual']:.1e}"
                             for w in ("v", "phi"))
            its = " / ".join(str(row.get(f"{w}_solver_iterations", "-")) for w in ("v", "phi"))
            conv = row.get("v_solver_converged", "-"), row.get("phi_solver_converged", "-")
            warm = f"{row['warm_build_s']:.3f}" if "warm_build_s" in row else "-"
            lines.append(
                f"| {damping} | {name} | {row['cos_v']:.4f} | {row['cos_phi']:.4f} | {row['relerr_v']:.3g} | "
                f"{row['relerr_phi']:.3g} | {res} | {conv[0]} / {conv[1]} | {its} | {row['build_s']:.3f} | "
                f"{row['v_solve_s']:.3f} | {row['phi_solve_s']:.3f} | {warm} |")
    if "curvlinops" in r:
        cl = r["curvlinops"]
        lines += ["", f"Independent check (curvlinops, damping {cl['damping']:g}): its GGN products differ from "
                  f"our dense GGN by {cl['ggn_product_relerr']:.1e} (relative); scipy CG on its operator "
                  f"(rtol 1e-3, status {cl['scipy_cg_status']}) gives v with cosine {cl['cos_v']:.6f} "
                  f"(relative error {cl['relerr_v']:.1e}) to the exact solve, in {cl['scipy_cg_s']:.1f} s."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
