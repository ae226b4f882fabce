"""Everything a command shows: the JSON report, summary tables, progress, warnings.

Stdout carries either the human summary or, with --json, only the report.
Progress bars and warnings go to stderr so pipelines can parse stdout.

--report is an output like any other (``ops.paths``): refused when it exists
without --force, and checked against the command's inputs and other outputs
by ``Run.claim`` before any work. A failure report is written only where the
report may safely go: never over a file that existed before the run unless
``claim`` cleared it, never over an input or another output.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.table import Table

from unlearn_cli import __version__
from unlearn_cli.cli.errors import fail
from unlearn_cli.errors import UnlearnError, one_line
from unlearn_cli.ops import dist
from unlearn_cli.ops.progress import Progress, silent


def _clean(value: Any) -> Any:
    """Plain JSON numbers only: numpy/torch scalars become floats, NaN/Inf become null."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _Bars:
    """One transient rich bar per progress phase on stderr; a phase reported again from 0 starts over."""

    def __init__(self, console: Console, label: str | None):
        from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn
        from rich.progress import Progress as RichProgress
        from rich.text import Text

        class Times(ProgressColumn):
            """Elapsed and time left from the mean pace since the phase began: an estimate after the first unit.

            Rich's own estimate looks at the last 30 s only, so units slower than
            that (one LiRA reference model) never gave it an estimate.
            """

            def render(self, task) -> Text:
                elapsed = task.elapsed or 0.0
                if task.finished or not task.completed or not task.total:
                    left = "-:--:--" if not task.finished else "0:00:00"
                else:
                    left = _clock(elapsed * (task.total - task.completed) / task.completed)
                return Text(f"{_clock(elapsed)} elapsed, eta {left}", style="progress.remaining")

        self.label = label
        self.tasks: dict[str, tuple[Any, int, int]] = {}  # phase -> (task, done, total)
        self.bar = RichProgress(TextColumn("{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(),
                                Times(), console=console, transient=True)

    def __enter__(self) -> "_Bars":
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    def update(self, phase: str, done: int, total: int) -> None:
        done, total = int(done), max(int(total), int(done))
        known = self.tasks.get(phase)
        if known is None:
            name = f"{self.label}: {phase}" if self.label else phase
            task = self.bar.add_task(name, total=total, completed=done)
        else:
            task, before, before_total = known
            if done < before or total != before_total:
                self.bar.reset(task, total=total, completed=done)  # the phase starts over (the next model)
            else:
                self.bar.update(task, completed=done)
        self.tasks[phase] = (task, done, total)


class Run:
    """One command invocation: collects the report and renders it."""

    def __init__(self, command: str, report: Path | None, json_out: bool, quiet: bool, debug: bool,
                 force: bool = False):
        self.command = command
        self.report_path = report
        self.force = force
        self._report_safe = False  # set once --report has passed its checks
        self._report_existed = report is not None and os.path.lexists(report)
        self._claimed = False
        self.json_out = json_out
        self.quiet = quiet
        self.debug = debug
        self.err = Console(stderr=True)
        self.out = Console(stderr=False)
        self._t0 = time.perf_counter()
        self.data: dict[str, Any] = {
            "command": command,
            "version": __version__,
            "status": "ok",
            "inputs": {},
            "outputs": {},
            "config": {},
            "timings": {},
            "metrics": {},
        }

    # -- output paths ---------------------------------------------------------
    def check_report(self) -> None:
        """--report: a writable folder, not a folder itself, not an existing file without --force."""
        if self.report_path is not None:
            from unlearn_cli.ops.paths import check_output

            check_output("--report", self.report_path, replace=self.force)
        self._report_safe = True

    def claim(self, inputs: list[tuple[str, Any]], outputs: list[tuple[str, Any]]) -> None:
        """Before any work: no output (``outputs`` and --report) is an input or another output.

        ``inputs`` and ``outputs`` are (name, path) pairs; ``None`` paths are skipped.
        """
        from unlearn_cli.ops.paths import PathCollision, check_distinct

        try:
            check_distinct(inputs, [*outputs, ("--report", self.report_path)])
        except PathCollision as exc:
            if "--report" in exc.labels:
                self._report_safe = False
            raise
        self._claimed = True

    def output_checked(self, label: str, path: Path | None, *, replace: bool | None = None) -> None:
        """An output file: its folder writable, and not replaced unless --force (or ``replace``)."""
        if path is not None:
            from unlearn_cli.ops.paths import check_output

            check_output(label, path, replace=self.force if replace is None else replace)

    @property
    def report_writable(self) -> bool:
        """Whether a (failure) report may be written now: checked, and new or cleared by ``claim``."""
        return self._report_safe and (self._claimed or not self._report_existed)

    # -- collecting -------------------------------------------------------
    def input(self, name: str, path: Path | str, sha256: str | None = None) -> None:
        self.data["inputs"][name] = {"path": str(path), "sha256": sha256}

    def output(self, name: str, path: Path | str, sha256: str | None = None) -> None:
        self.data["outputs"][name] = {"path": str(path), "sha256": sha256}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.data["timings"][f"{name}_s"] = round(time.perf_counter() - t0, 6)

    @contextmanager
    def startup(self) -> Iterator[None]:
        """Time one-off imports (torch, the method's modules) as ``startup_s``, outside ``total_s``.

        ``total_s`` is the command's own work; the whole process is start-up
        plus ``total_s`` plus the interpreter's own start.
        """
        with self.phase("startup"):
            yield

    def preload(self, *modules: str) -> None:
        """Import heavy modules (torch, the influence engine) up front, timed as start-up."""
        import importlib

        with self.startup():
            for name in modules:
                importlib.import_module(name)

    def warn(self, message: str) -> None:
        message = one_line(message)  # escaped, one line, capped: a file name cannot drive the terminal
        self.data.setdefault("warnings", []).append(message)
        if (not self.quiet or self.json_out) and dist.is_main():
            print(f"unlearn {self.command}: warning: {message}", file=sys.stderr)

    @property
    def show_progress(self) -> bool:
        """Bars only on a terminal: never under --quiet or --json (a machine reads the run), never in a pipe
        or a CI log (no control characters), never on a terminal that cannot move the cursor (TERM=dumb).
        """
        return (not self.quiet and not self.json_out and sys.stderr.isatty()
                and os.environ.get("TERM") != "dumb" and dist.is_main())

    @contextmanager
    def progress(self, label: str | None = None) -> Iterator[Progress]:
        """A ``progress(phase, done, total)`` callback (``ops.progress``) for the library.

        On a terminal each phase is one rich bar on stderr (``label: phase``, done/total,
        elapsed, time left); otherwise the callback does nothing.
        """
        if not self.show_progress:
            yield silent
            return
        with _Bars(self.err, label) as bars:
            yield bars.update

    # -- finishing ----------------------------------------------------------
    def _final(self) -> dict[str, Any]:
        startup = self.data["timings"].get("startup_s", 0.0)
        self.data["timings"]["total_s"] = round(time.perf_counter() - self._t0 - startup, 6)
        return _clean(self.data)

    def _recorded(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The input and output paths the report records, as (name, path) pairs."""
        def paths(section: str) -> list[tuple[str, str]]:
            found = []
            for name, entry in self.data.get(section, {}).items():
                if isinstance(entry, dict) and entry.get("path"):
                    found.append((f"{section[:-1]} {name}", str(entry["path"])))
            return found
        return paths("inputs"), paths("outputs")

    def emit(self, report: dict[str, Any]) -> None:
        """Write --report (atomically) and print the report with --json.

        The report's own paths are the last check: it is never written over
        a file the report records as an input or output. Under torchrun rank 0 alone emits.
        """
        if not dist.is_main():
            return
        if self.report_path is not None and self.report_writable:
            from unlearn_cli.ops.atomic import write_text
            from unlearn_cli.ops.paths import check_distinct

            inputs, outputs = self._recorded()
            check_distinct(inputs + outputs, [("--report", self.report_path)])
            write_text(self.report_path, json.dumps(report, indent=2) + "\n")
        if self.json_out:
            sys.stdout.write(json.dumps(report, indent=2) + "\n")
            sys.stdout.flush()

    def finish(self) -> dict[str, Any]:
        report = self._final()
        self.emit(report)
        return report


@contextmanager
def command_run(
    command: str, *, report: Path | None, json_out: bool, quiet: bool, debug: bool, force: bool = False
) -> Iterator[Run]:
    """Run a command body; map failures to exit codes; emit the report either way (where it may go).

    Under torchrun the command runs in every process of the job (``ops.dist``): joined here, left at the end.
    """
    import typer

    run = Run(command, report, json_out, quiet, debug, force)
    started = False
    try:
        started = dist.start()
        if started:  # joining waits for every rank's start-up: timed apart, outside total_s like startup_s
            run.data["timings"]["dist_start_s"] = round(time.perf_counter() - run._t0, 6)
            run._t0 = time.perf_counter()
        if not dist.is_main():  # stdout is rank 0's: the other ranks print nothing there
            run.out = Console(file=open(os.devnull, "w"), stderr=False)
        run.check_report()
        yield run
        if dist.active():  # every rank got here: what each one did, in rank 0's report
            run.data["distributed"] = dist.summary()
        run.finish()
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        print(f"unlearn {command}: interrupted", file=sys.stderr)
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - every failure becomes a one-line message and an exit code
        run.data["status"] = "failed"
        run.data["error"] = one_line(exc) if str(exc) else type(exc).__name__  # no private detail (raw IDs)
        exit_exc = _fail(command, exc, debug)
        try:  # a failure report helps pipelines; writing it must never mask the error
            run.emit(run._final())
        except Exception:  # noqa: BLE001
            pass
        raise exit_exc from None
    finally:
        if started:
            dist.stop()


def _fail(command: str, exc: Exception, debug: bool):
    """``fail``; under torchrun, ranks other than 0 stay silent about what rank 0 says too (a known error,
    a peer's failure) and name their rank in what only they saw."""
    if dist.is_main() or debug:
        return fail(command if dist.is_main() else f"{command} (rank {dist.rank()})", exc, debug)
    import typer

    if isinstance(exc, UnlearnError):
        return typer.Exit(exc.exit_code)
    return fail(f"{command} (rank {dist.rank()})", exc, debug)


def fmt(value: Any, digits: int = 4) -> str:
    """A cell's text: ``digits`` decimals; a non-zero float that would print as 0.0000 in scientific notation."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and math.isfinite(value) and abs(value) < 0.5 * 10 ** -digits:
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def keep_whole(table: Table) -> Table:
    """Let a table narrow to the terminal without cutting a number.

    Numeric (right-justified) columns never shrink below their widest cell or
    their header's longest word (a header wraps at its spaces); text columns
    wrap at spaces and fold a word longer than the column instead of ending it
    with an ellipsis. Every table a command prints goes through here.
    """
    from rich.cells import cell_len
    from rich.text import Text

    def width(cell: Any) -> int:
        return cell.cell_len if isinstance(cell, Text) else cell_len(Text.from_markup(str(cell)).plain)

    for column in table.columns:
        column.overflow = "fold"
        if column.justify == "right":
            words = str(column.header).split() or [""]
            column.min_width = max([1, *(width(c) for c in column.cells), *(cell_len(w) for w in words)])
    return table


def split_table(title: str, metrics: dict[str, dict[str, Any]], columns=("n", "accuracy", "loss", "ece")) -> Table:
    """One row per split (train/test/retain/forget...), one column per metric."""
    table = Table(title=title, title_justify="left")
    table.add_column("split")
    for col in columns:
        table.add_column(col, justify="right")
    for split, values in metrics.items():
        if isinstance(values, dict):
            table.add_row(split, *(fmt(values.get(c)) for c in columns))
    return keep_whole(table)


def key_values(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in rows.items():
        table.add_row(str(key), fmt(value) if not isinstance(value, (dict, list)) else json.dumps(_clean(value)))
    return keep_whole(table)


def show(run: Run, *renderables: Any) -> None:
    """Print human output unless --json or --quiet (rank 0 alone under torchrun)."""
    if run.json_out or run.quiet or not dist.is_main():
        return
    for item in renderables:
        run.out.print(item)
