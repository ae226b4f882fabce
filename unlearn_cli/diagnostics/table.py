"""The per-record label-issue table of ``debug-labels --out-table`` (cleanlab's ``find_label_issues`` layout).

One row per train record, most suspicious first: rank, id, given label, the
model's predicted label, the suggested label (argmax of the ranker's
out-of-sample probabilities when it has them, else the model's prediction),
the ranker's score, p(given label) under the model, and whether the record is
an issue (among the first ``estimate`` records of the ranking). CSV or JSON by
the file's extension. It holds raw record IDs: like ``--out``, it is written
only when the user names the file.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np

COLUMNS = ("rank", "id", "given_label", "predicted_label", "suggested_label", "score", "p_given", "is_label_issue")


def issue_rows(ranking: Any, dataset: Any, issue: np.ndarray) -> list[dict[str, Any]]:
    suggested = ranking.oos_probs.argmax(1) if ranking.oos_probs is not None else ranking.predicted
    out = []
    for place, pos in enumerate(ranking.order):
        row = ranking.rows[pos]
        out.append({
            "rank": place + 1,
            "id": str(dataset.ids[row]),
            "given_label": int(dataset.y[row]),
            "predicted_label": int(ranking.predicted[pos]),
            "suggested_label": int(suggested[pos]),
            "score": float(ranking.score[pos]),
            "p_given": float(ranking.confidence[pos]),
            "is_label_issue": bool(issue[pos]),
        })
    return out


def issue_table(ranking: Any, dataset: Any, issue: np.ndarray, suffix: str) -> str:
    """The table as text: ``suffix`` ".json" gives a JSON list of objects, anything else CSV."""
    rows = issue_rows(ranking, dataset, issue)
    if suffix == ".json":
        return json.dumps(rows, indent=1) + "\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "score": f"{row['score']:.6g}", "p_given": f"{row['p_given']:.6g}",
                         "is_label_issue": "yes" if row["is_label_issue"] else "no"})
    return buffer.getvalue()
