"""Steering at each edit position (issue 15): the base steered along the rank-1 organisms' write vectors B at
layer 15 (0.2 of each token's residual norm) with positions all / skip-first / answer, each beside 20 random
directions, on the first 30 general contrast pairs. CPU, about 15 minutes on 2 idle cores.

    python scripts/steering_positions.py --out figures/ground_truth/steering_positions
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import misdir
from misdir.experiments import steering_grid
from misdir.ground_truth import adapter_writes
from misdir.io import write_json_atomic

C = Path("checkpoints/smollm2-135m")
ORGANISMS = ("rank1-medical-bad", "rank1-finance-risky", "rank1-sports-extreme", "rank1-medical-good")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="results/steering-positions")
    parser.add_argument("--items", type=int, default=30)
    parser.add_argument("--scale", type=float, default=0.2)
    args = parser.parse_args()
    out = Path(args.out)
    base = misdir.load_model("embedded")
    directions = {name: adapter_writes(C / name)[15] for name in ORGANISMS}
    table = {}
    for positions in ("all", "skip-first", "answer"):
        summary = steering_grid(base, directions, out=out / positions, layers=[15], scales=[args.scale],
                                n_random=20, positions=positions, limit=args.items, progress=False)
        table[positions] = summary
        print(positions, json.dumps(summary)[:1500], flush=True)
    write_json_atomic(out / "positions.json", table)


if __name__ == "__main__":
    main()
