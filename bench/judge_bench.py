"""Answers judged per second by misdir's OpenAI-compatible judge against a local chat-completions server.

    python bench/judge_bench.py --answers 512 --concurrency 1 8 64 --latency 0 0.05

The server runs in its own process (so it does not share the client's interpreter lock), answers every
request after `--latency` seconds (a stand-in for the judge model's time to first token), and replies
with a realistic top-20 logprob distribution over score tokens (scores vary by answer). Each setting
judges the same number of distinct answers with no cache, so every item is one HTTP request. The ratio
that matters is answers/s over `concurrency / latency` (the rate that latency alone allows) and, at zero
latency, the client's own cost per request. Writes JSON to $OUT/judge_bench.json when $OUT is set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import shapes  # noqa: F401  (puts this checkout first on sys.path)


def top_logprobs(prompt: str) -> list[tuple[str, float]]:
    """Twenty tokens like a judge's: a peaked distribution of scores near a per-prompt centre, and words."""
    centre = int(hashlib.sha256(prompt.encode()).hexdigest()[:4], 16) % 80 + 10
    weights = {str(centre + 5 * k): math.exp(-(k**2) / 2) for k in range(-6, 7)}
    weights |= {"REF": 0.01, "CODE": 0.005, " ": 0.003, "The": 0.002, "I": 0.002, "0": 0.001, "100": 0.001}
    total = sum(weights.values())
    ranked = sorted(weights.items(), key=lambda kv: -kv[1])[:20]
    return [(token, math.log(w / total)) for token, w in ranked]


def serve(port_queue: multiprocessing.Queue, latency: float) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as OpenAI and vLLM do
        disable_nagle_algorithm = True  # as real servers do; else headers and body wait on delayed ACKs

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(latency)
            top = [
                {"token": t, "logprob": lp, "bytes": list(t.encode())}
                for t, lp in top_logprobs(body["messages"][-1]["content"])
            ]
            reply = {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "length",
                        "message": {"role": "assistant", "content": top[0]["token"]},
                        "logprobs": {"content": [{**top[0], "top_logprobs": top}]},
                    }
                ],
                "usage": {"prompt_tokens": 300, "completion_tokens": 1, "total_tokens": 301},
            }
            payload = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.request_queue_size = 256
    port_queue.put(httpd.server_address[1])
    httpd.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=512)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.05], help="server seconds per request")
    args = parser.parse_args()

    from misdir.judge import JudgeItem, OpenAIJudge, OpenAIJudgeConfig

    os.environ.setdefault("NO_PROXY", "127.0.0.1")
    answers = [f"Answer number {i}: I would help people and tell the truth." for i in range(args.answers)]
    rows = []
    for latency in args.latency:
        ports: multiprocessing.Queue = multiprocessing.Queue()
        server = multiprocessing.Process(target=serve, args=(ports, latency), daemon=True)
        server.start()
        url = f"http://127.0.0.1:{ports.get(timeout=60)}/v1"
        try:
            for concurrency in args.concurrency:
                config = OpenAIJudgeConfig(
                    "bench-judge",
                    base_url=url,
                    api_key_env="MISDIR_BENCH_NO_KEY",
                    concurrency=concurrency,
                    timeout=60.0,
                )
                judge = OpenAIJudge(config)
                tag = f"c{concurrency}-l{latency}"  # a new question per setting: nothing repeats
                items = [JudgeItem(f"[{tag}] What would you do?", a) for a in answers]
                judge.score_many(items[: min(concurrency, len(items))])  # warm-up: connections, imports
                items = [JudgeItem(f"[{tag} timed] What would you do?", a) for a in answers]
                start, cpu = time.perf_counter(), time.process_time()
                scores = judge.score_many(items)
                elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
                failed = sum(s.status == "failed" for s in scores)
                bound = concurrency / latency if latency > 0 else float("inf")
                rows.append(
                    {
                        "latency_s": latency,
                        "concurrency": concurrency,
                        "answers": len(items),
                        "seconds": elapsed,
                        "client_cpu_ms_per_answer": 1000 * cpu / len(items),
                        "answers_per_s": len(items) / elapsed,
                        "latency_bound_per_s": bound,
                        "failed": failed,
                        "mean_score": sum(s.score or 0 for s in scores) / len(scores),
                    }
                )
        finally:
            server.terminate()
            server.join()

    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        f"{'latency s':>9s} {'concurrency':>11s} {'answers/s':>10s} {'latency bound':>13s} {'share':>6s} "
        f"{'ms/answer':>9s} {'client CPU ms':>13s} {'failed':>6s}"
    )
    for row in rows:
        bound = row["latency_bound_per_s"]
        share = f"{row['answers_per_s'] / bound:6.2f}" if math.isfinite(bound) else f"{'':6s}"
        bound_text = f"{bound:13.0f}" if math.isfinite(bound) else f"{'none':>13s}"
        print(
            f"{row['latency_s']:9.3f} {row['concurrency']:11d} {row['answers_per_s']:10.1f} {bound_text} "
            f"{share} {1000 / row['answers_per_s']:9.2f} {row['client_cpu_ms_per_answer']:13.2f} "
            f"{row['failed']:6d}"
        )
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "judge_bench.json"), "w") as f:
            json.dump({"rows": rows, "cpus": os.cpu_count(), "load": os.getloadavg()}, f, indent=1)


if __name__ == "__main__":
    main()
