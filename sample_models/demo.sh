#!/usr/bin/env bash
# `make demo`: the main job end to end on a shipped sample model.
# train -> evaluate -> inspect -> mark a k-means cluster -> forget it with PUMA -> inspect its lineage
# -> retrain as the reference -> attack unlearned vs retrained.
set -euo pipefail
cd "$(dirname "$0")/.."
out=demo-output
rm -rf "$out"
mkdir -p "$out"
data=sample_models/breast-cancer/manifest.yaml

step() { printf '\n== %s\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

step "train an MLP (64-32, the paper's) on breast-cancer" \
  unlearn train "$data" --out "$out/model.safetensors" --report "$out/train.json" --quiet
step "evaluate it" unlearn evaluate "$out/model.safetensors"
step "what the checkpoint records (--quiet: the key facts on one line)" \
  unlearn inspect "$out/model.safetensors" --quiet
step "mark the paper's k-means cluster (appendix A) of class 1 for removal" \
  unlearn mark "$data" --strategy cluster --label 1 --pick median --out "$out/forget-ids.txt" --quiet
step "forget those records with PUMA" \
  unlearn forget "$out/model.safetensors" "$out/forget-ids.txt" --method puma \
    --out "$out/model.unlearned.safetensors" --report "$out/forget.json"
step "what the unlearned checkpoint records: its lineage" unlearn inspect "$out/model.unlearned.safetensors"
step "retrain without them: the reference" \
  unlearn forget "$out/model.safetensors" "$out/forget-ids.txt" --method retrain \
    --out "$out/model.retrained.safetensors" --report "$out/retrain.json" --quiet
step "membership attack (loss threshold): unlearned vs retrained" \
  unlearn attack "$out/model.unlearned.safetensors" --ids "$out/forget-ids.txt" --attack loss \
    --reference "$out/model.retrained.safetensors" --report "$out/attack.json"

python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
f = json.load(open(f"{out}/forget.json"))
r = json.load(open(f"{out}/retrain.json"))
a = json.load(open(f"{out}/attack.json"))
def acc(rep, when, split):
    return rep["metrics"][when][split]["accuracy"]
print("\n== summary")
print(f"records forgotten:        {f['metrics']['forgotten']}")
print(f"test accuracy:            original {acc(f,'before','test'):.3f}  puma {acc(f,'after','test'):.3f}  retrain {acc(r,'after','test'):.3f}")
print(f"forget-set accuracy:      original {acc(f,'before','forget'):.3f}  puma {acc(f,'after','forget'):.3f}  retrain {acc(r,'after','forget'):.3f}")
print(f"own time (s):             puma {f['timings']['method_s']:.2f}  retrain {r['timings']['method_s']:.2f}")
att = a["metrics"]["loss"]; ref = a["metrics"]["reference"]["loss"]
print(f"forget-set member rate:   puma {att['forget']['member_rate']:.3f}  retrain {ref['forget']['member_rate']:.3f}")
print(f"outputs in {out}/")
PY
