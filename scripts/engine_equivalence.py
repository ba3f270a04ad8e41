"""Do two versions of ticketlab give the same masks and metrics? (the check behind issue 7's note)

Runs a fixed set of small built-in experiments (sequential with reinit and random controls,
late rewinding with checkpoints, a conv net, and ``--batch 4``) with the ticketlab found on
``sys.path`` and writes every unit's summary, mask hash and evaluation curve to a JSON file;
``--compare A.json B.json`` then reports what differs.

    PYTHONPATH=<old checkout>/src python scripts/engine_equivalence.py run /tmp/old   # writes /tmp/old/summary.json
    python scripts/engine_equivalence.py run /tmp/new
    python scripts/engine_equivalence.py compare /tmp/old/summary.json /tmp/new/summary.json
"""

from __future__ import annotations

import hashlib
import json
import sys

SHORT = {"iterations": 120, "eval_every": 40, "batch_size": 32}
CASES = [
    ("seq", {"model": "mlp_32_16", "levels": 2, "seeds": 2, "controls": ["reinit", "random"],
             "data": {"dataset": "digits"}, "train": SHORT}, {"workers": 1}),
    ("late", {"model": "mlp_32_16", "levels": 2, "seeds": 1, "rewind_iteration": 20, "controls": ["random"],
              "data": {"dataset": "digits"}, "train": {**SHORT, "checkpoint_every": 50}}, {"workers": 1}),
    ("batched", {"model": "mlp_32_16", "levels": 2, "seeds": 2, "controls": ["reinit"],
                 "data": {"dataset": "digits"}, "train": SHORT}, {"workers": 1, "batch": 4, "probe_batch": False}),
    ("conv", {"model": "conv2", "levels": 1, "seeds": 1, "data": {"dataset": "digits"},
              "train": {"iterations": 30, "eval_every": 10, "batch_size": 16}}, {"workers": 1}),
]


def run(out: str) -> None:
    import ticketlab
    from ticketlab.config import Config, RunOptions

    results = {}
    for name, raw, options in CASES:
        try:
            opts = RunOptions(root=f"{out}/{name}", device="cpu", progress=False, **options)
        except TypeError:  # a version without probe_batch
            opts = RunOptions(root=f"{out}/{name}", device="cpu", progress=False,
                              **{k: v for k, v in options.items() if k != "probe_batch"})
        result = ticketlab.run(Config.from_dict(raw), opts)
        units = []
        for summary in result.runs:
            summary = {k: v for k, v in summary.items() if k not in ("wall_time_s", "eval_time_s")}
            mask = result.mask(summary["level"], summary["replicate"], summary["arm"])
            summary["mask_sha"] = hashlib.sha256(b"".join(mask[n].numpy().tobytes() for n in sorted(mask))).hexdigest()
            summary["metrics"] = result.metrics(summary["level"], summary["replicate"], summary["arm"])
            units.append(summary)
        results[name] = units
    with open(f"{out}/summary.json", "w") as handle:
        json.dump(results, handle, indent=1, sort_keys=True)
    print(f"wrote {out}/summary.json")


def compare(a_path: str, b_path: str) -> None:
    a, b = (json.load(open(p)) for p in (a_path, b_path))
    for case in a:
        old = {(u["replicate"], u["level"], u["arm"]): u for u in a[case]}
        new = {(u["replicate"], u["level"], u["arm"]): u for u in b[case]}
        fields = sorted({(unit, f) for unit in old for f in set(old[unit]) | set(new.get(unit, {}))
                         if f not in ("metrics", "metric") and old[unit].get(f) != new.get(unit, {}).get(f)})
        worst: dict[str, float] = {}
        for unit in old:
            for x, y in zip(old[unit]["metrics"], new.get(unit, {}).get("metrics", [])):
                for key in x:
                    if x[key] != y.get(key) and isinstance(x[key], float):
                        worst[key] = max(worst.get(key, 0.0), abs(x[key] - y[key]) / abs(x[key]))
        print(f"{case}: {len(old)} units, {len(fields)} differing summary fields "
              f"({', '.join(sorted({f for _, f in fields})) or 'none'}), "
              f"largest relative metric difference: {worst or 'none'}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"] and len(sys.argv) == 3:
        run(sys.argv[2])
    elif sys.argv[1:2] == ["compare"] and len(sys.argv) == 4:
        compare(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
