"""Load test of `clinlm serve` on loopback: C concurrent clients x R requests each.

Trains (or takes) a tiny checkpoint, serves it with uvicorn on 127.0.0.1:<free port> in this
process, and has C threads, each with its own official `openai` client, send R chat completions
with a 2 s heart-sound upload (base64 wav) and a question. Prints throughput (requests/s),
p50/p95 latency and the number of failed requests, and how many generate calls the batcher made.

    python benchmarks/serve_load.py                       # 8 clients x 25 requests, toy checkpoint
    python benchmarks/serve_load.py --checkpoint qs/model --clients 4 --requests 10
"""

from __future__ import annotations

import argparse
import base64
import io
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def tiny_checkpoint(root: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from clinlm_toys import tiny_overrides, write_toy_bench

    from clinlm.train.run import train_from_config

    bench = write_toy_bench(root / "bench", n_patients=6, comparison=False)
    return Path(train_from_config(str(REPO / "configs/stetholm_tiny.yaml"),
                                  tiny_overrides(bench, root / "run") + ["train.max_steps=40", "train.lr=0.01"]))


def wav_b64(seconds: float = 2.0, sr: int = 4000) -> str:
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 40 * t) * (np.sin(2 * np.pi * 1.2 * t) > 0.6) + 0.01 * np.random.default_rng(0).standard_normal(len(t))
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=None, help="a model folder (default: train a tiny one)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=25, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=16)
    args = ap.parse_args()

    import uvicorn
    from openai import OpenAI

    import clinlm
    from clinlm.serve.api import create_app

    tmp = tempfile.TemporaryDirectory()
    ckpt = args.checkpoint or tiny_checkpoint(Path(tmp.name))
    key = "bench-key-123456"
    app = create_app(clinlm.load(ckpt), api_key=key, model_name="bench")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)

    audio = wav_b64()
    messages = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}},
                                             {"type": "text", "text": "Is there a murmur?"}]}]
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        c = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=120)
        for _ in range(args.requests):
            t0 = time.perf_counter()
            try:
                r = c.chat.completions.create(model="bench", messages=messages, max_tokens=args.max_tokens)
                why = None if isinstance(r.choices[0].message.content, str) else "no answer text"
            except Exception as exc:  # counted, not raised: the figure is the failure count
                why = f"{type(exc).__name__}: {exc}"
            dt = time.perf_counter() - t0
            with lock:
                if why is None:
                    latencies.append(dt)
                else:
                    failures.append(why)

    c0 = time.process_time()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    server.should_exit = True
    total = args.clients * args.requests
    b = app.state.batcher
    lat = np.array(latencies) * 1000
    print(f"{args.clients} clients x {args.requests} requests = {total} on 127.0.0.1, max_tokens={args.max_tokens}, 2 s wav upload each")
    print(f"wall {wall:.1f} s, process CPU {cpu:.1f} s, throughput {len(latencies) / wall:.1f} requests/s")
    if len(lat):
        print(f"latency p50 {np.percentile(lat, 50):.0f} ms, p95 {np.percentile(lat, 95):.0f} ms, max {lat.max():.0f} ms")
    print(f"failed requests: {len(failures)}" + (f" (first: {failures[0]})" if failures else ""))
    print(f"generate calls: {b.batches} for {b.requests} requests (mean batch {b.requests / max(b.batches, 1):.1f})")
    tmp.cleanup()


if __name__ == "__main__":
    main()
