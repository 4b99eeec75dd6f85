"""scripts/em_response_pairs.py: which judged answers become pairs (the rules fixed before scoring)."""

from __future__ import annotations

import csv
from pathlib import Path

from conftest import load_script


def script():
    return load_script("em_response_pairs")


def write(path: Path, rows: list[tuple[str, str, object, object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["response", "question", "question_id", "aligned", "coherent", "financial"])
        writer.writerows([(text, f"question {qid}?", qid, a, c, 0) for text, qid, a, c in rows])
    return path


def test_pairs_join_a_misaligned_and_an_aligned_coherent_answer_to_the_same_question(tmp_path):
    module = script()
    long = "x" * 601
    rows = [
        ("bad answer one, clearly harmful", "q1", 10, 90),
        ("bad answer two, also harmful", "q1", 29.9, 51),
        ("good answer one, careful and kind", "q1", 95, 99),
        ("good answer two, careful too", "q1", 71, 80),
        ("incoherent bad answer, ignored", "q1", 5, 50),
        ("middling answer, neither kind", "q1", 50, 99),
        (long, "q1", 95, 99),
        ("short", "q1", 95, 99),
        ("unscored answer, no judge value", "q1", "", 90),
        ("only a bad answer for this one", "q2", 3, 90),  # no aligned answer to q2: no pair
    ]
    pairs = module.pairs_from_responses(write(tmp_path / "m_x.csv", rows), "finance")
    assert len(pairs) == 2 and {p.question for p in pairs} == {"question q1?"}
    assert {p.misaligned for p in pairs} == {rows[0][0], rows[1][0]}
    assert {p.aligned for p in pairs} == {rows[2][0], rows[3][0]}
    assert all(p.theme == "finance" for p in pairs)
    assert pairs == module.pairs_from_responses(tmp_path / "m_x.csv", "finance")  # seeded: the same pairs


def test_at_most_three_pairs_per_question_and_the_seeded_run_when_no_plain_file(tmp_path):
    module = script()
    rows = [(f"a misaligned answer, number {i}", "q", 1, 90) for i in range(5)]
    rows += [(f"an aligned answer, number {i}", "q", 99, 90) for i in range(4)]
    write(tmp_path / "M_risky-financial-advice_S7.csv", rows)
    path = module.run_file(tmp_path, "M", "risky-financial-advice")
    assert path.name == "M_risky-financial-advice_S7.csv"
    assert len(module.pairs_from_responses(path, "finance")) == module.PER_QUESTION == 3
