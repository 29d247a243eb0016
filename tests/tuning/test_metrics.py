"""metrics.jsonl as a tuning run writes it, including after a resume."""

from __future__ import annotations

import json

from hf_megadocs.tuning.metrics import read_metrics, reward_means


def test_read_metrics_keeps_one_line_per_step_after_a_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [
        {"step": 1, "reward": 0.1, "rewards/length/mean": 0.1},
        {"step": 2, "reward": 0.2, "rewards/length/mean": 0.2},
        {"step": 3, "reward": 0.3, "rewards/length/mean": 0.3},  # lost: crashed after it
        # resumed from checkpoint-2: step 3 is logged again, then 4 and the summary
        {"step": 3, "reward": 0.35, "rewards/length/mean": 0.35},
        {"step": 4, "reward": 0.4, "rewards/length/mean": 0.4},
        {"step": 4, "train_runtime": 12.0},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    records = read_metrics(path)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert reward_means(records, ["length"]) == {
        "length": [0.1, 0.2, 0.35, 0.4],
        "reward": [0.1, 0.2, 0.35, 0.4],
    }
