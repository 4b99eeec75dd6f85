import json
import subprocess
import sys

import pytest

from misdir.io import RecordLog, RunLockedError, atomic_path, run_lock, write_json_atomic


def test_record_log_round_trip_and_resume(tmp_path):
    path = tmp_path / "scores.jsonl"
    log = RecordLog(path)
    for i in range(3):
        log.append({"key": f"k{i}", "value": i})
    again = RecordLog(path)
    assert [r["value"] for r in again.records()] == [0, 1, 2]
    assert "k1" in again and "k9" not in again and len(again) == 3
    with pytest.raises(ValueError, match="already written"):
        again.append({"key": "k1", "value": 5})


def test_record_log_cuts_a_torn_last_line_and_keeps_the_rest(tmp_path):
    path = tmp_path / "answers.jsonl"
    log = RecordLog(path)
    log.append({"key": "a", "text": "one"})
    with path.open("ab") as f:
        f.write(b'{"key": "b", "te')  # killed mid-write
    resumed = RecordLog(path)
    assert resumed.repaired_bytes == len(b'{"key": "b", "te')
    assert [r["key"] for r in resumed.records()] == ["a"]
    resumed.append({"key": "b", "text": "two"})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["a", "b"]


def test_record_log_names_file_and_line_of_a_bad_record(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"key": "a"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl line 2"):
        RecordLog(path)
    path.write_text('{"key": "a"}\n{"key": "a"}\n')
    with pytest.raises(ValueError, match="line 2: duplicate"):
        RecordLog(path)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_run_lock_refuses_a_second_run_and_is_released_by_a_dead_holder(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from misdir.io import run_lock\n"
            "with run_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"), run_lock(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(tmp_path):  # the kernel dropped the dead holder's lock
        pass
