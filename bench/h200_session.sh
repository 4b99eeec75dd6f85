#!/usr/bin/env bash
# Every GPU figure of issue 17 in one device call (one H200, at most 540 s): see bench/issue17_session.py.
#   bash bench/h200_session.sh                      # random Qwen2.5-7B shape, bf16
#   bash bench/h200_session.sh --shape qwen2.5-0.5b # any other argument goes to the script
# JSON files land in $OUT (./out when unset); the printed log has timestamps and a table per part.
set -u
cd "$(dirname "$0")/.."
export OUT="${OUT:-$PWD/out}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
timeout -k 10 530 python3 bench/issue17_session.py --device cuda --budget 500 "$@" 2>&1 | tee "$OUT/session.log"
echo "exit ${PIPESTATUS[0]}; files: $(ls "$OUT" | tr '\n' ' ')"
