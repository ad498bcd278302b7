"""bench_course's BENCHMARKS.md section, from a synthetic result of the shape run_course_benchmark returns."""

from __future__ import annotations

import numpy as np

from benchmarks.course import CONFIGS, RATES, SHOWN_STEPS, markdown_section


def _result(steps: int) -> dict:
    rng = np.random.default_rng(0)

    def conversions(names):
        return {
            name: {"accuracy": rng.uniform(size=steps).tolist(), "agreement": rng.uniform(size=steps).tolist()}
            for name in names
        }

    names = [f"{encoding}/{norm}" for encoding, norm in CONFIGS]
    return {
        "dataset": "digits",
        "model": "digits-mlp100",
        "steps": steps,
        "machine": "test",
        "test_samples": 360,
        "ann_accuracy": 0.9639,
        "float": conversions(names + ["analog/max, hard reset", "poisson/max, hard reset"]),
        "rate_sweep": {
            w: {n: rng.uniform(size=len(RATES)).tolist() for n in ("max", "spikenorm")}
            for w in ("float", "constrained", "finetuned")
        },
        "constrained_ann_accuracy": 0.9583,
        "constrained": conversions(names),
        "finetune_epochs": 3,
        "finetuned_ann_accuracy": 0.9611,
        "finetuned": conversions(names),
        "rate_plot": "x/course-digits-rate.png",
    }


def test_section_shows_every_step_and_every_rate():
    result = _result(steps=16)
    section = markdown_section(result)
    every_t = section[section.index("<details>") :]
    rows = [line for line in every_t.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(row.split("|")[1]) for row in rows] == list(range(1, 17))
    first = rows[0].split("|")[2:-1]
    assert len(first) == 6 + 4 + 4
    assert float(first[0]) == round(100 * result["float"]["analog/max"]["accuracy"][0], 2)
    assert f"| T={max(t for t in SHOWN_STEPS if t <= 16)} |" in section and "T=32" not in section.split("<details>")[0]
    assert "| finetuned | spikenorm | " in section
    assert "95.83% before fine-tuning, 96.11% after 3 epochs" in section
