#!/usr/bin/env python3
"""Plays the demo game (game.py) against a vlmserve server: frames in, action out, the game steps.

An example of a remote agent: Debian's python3 with python3-grpcio and python3-pil, the gRPC stubs
compiled at start from proto/vlmserve/v1/vlmserve.proto with protoc and grpc_python_plugin (Debian's
protobuf-compiler and protobuf-compiler-grpc). Each step sends the last four frames as raw RGB
(`PredictRequest.frames`, oldest first; the server composes the 2x2 grid) with the game's
instruction, and plays `PredictResult.action.button`.

  agent.py --server 127.0.0.1:50051 [--episodes 10] [--seed 1] [--json]

Prints one line per episode (steps, success, the share of steps where the model pressed the
expert's button, latency) and a summary. A random policy plays the same seeds (locally) for
comparison. With --json the last line is one JSON object: success_rate, random_success_rate,
button_accuracy, valid_actions, latency_ms {p50, p90, p99, mean}, steps, episodes.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import game  # noqa: E402


def load_stubs(proto_dir, protoc="protoc", plugin=None):
    """Compiles the service's stubs into a temporary directory and imports them."""
    plugin = plugin or "/usr/bin/grpc_python_plugin"
    out = tempfile.mkdtemp(prefix="vlmserve_agent_")
    subprocess.run([protoc, "-I", proto_dir, f"--python_out={out}",
                    f"--plugin=protoc-gen-grpc_python={plugin}", f"--grpc_python_out={out}",
                    "vlmserve/v1/vlmserve.proto"], check=True)
    sys.path.insert(0, out)
    from vlmserve.v1 import vlmserve_pb2, vlmserve_pb2_grpc
    return vlmserve_pb2, vlmserve_pb2_grpc


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return 0.0
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Agent:
    def __init__(self, stub, pb, api_key=None, timeout_s=30.0):
        self.stub, self.pb, self.timeout_s = stub, pb, timeout_s
        self.metadata = [("authorization", f"Bearer {api_key}")] if api_key else None

    def act(self, frames, session):
        """The server's action for the last four frames: (action dict or None, latency in ms)."""
        import grpc
        req = self.pb.PredictRequest(prompt=game.INSTRUCTION.encode(), session_id=session)
        for f in frames:
            img = req.frames.add()
            img.raw.width, img.raw.height, img.raw.rgb = f.width, f.height, f.tobytes()
        # UNAVAILABLE (the model is still loading) and RESOURCE_EXHAUSTED (the queue is full) are
        # worth retrying; the server suggests how long to wait in the retry-after-ms trailer.
        retry_until = time.monotonic() + 60
        while True:
            t = time.perf_counter()
            result = None
            try:
                for msg in self.stub.Predict(req, timeout=self.timeout_s, metadata=self.metadata):
                    if msg.HasField("result"):
                        result = msg.result
                break
            except grpc.RpcError as e:
                retryable = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
                if e.code() not in retryable or time.monotonic() > retry_until:
                    raise
                hint = dict(e.trailing_metadata() or ()).get("retry-after-ms", "200")
                time.sleep(min(2.0, max(0.05, int(hint) / 1000 if str(hint).isdigit() else 0.2)))
        ms = (time.perf_counter() - t) * 1000
        try:
            action = json.loads(result.text)
        except (AttributeError, ValueError):
            return None, ms
        return action, ms


def play(seed, policy):
    """One episode; policy(game, history) -> button or None. Returns (won, steps, right, valid)."""
    g = game.Game(seed)
    history, right, valid = [], 0, 0
    while not g.done and not g.out_of_steps:
        history.append(g.frame())
        expert = g.expert_action()["button"]
        button = policy(g, history)
        valid += button is not None
        right += button == expert
        g.step(button)
    return g.done, g.steps, right, valid


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True, help="HOST:PORT of a vlmserve server")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1, help="episode i plays game seed SEED + i")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    ap.add_argument("--proto-dir", default=os.path.join(HERE, "..", "..", "proto"))
    ap.add_argument("--protoc", default="protoc")
    ap.add_argument("--plugin", default=None, help="grpc_python_plugin (default /usr/bin's)")
    ap.add_argument("--api-key", default=os.environ.get("VLMSERVE_API_KEY"))
    args = ap.parse_args()

    pb, pb_grpc = load_stubs(args.proto_dir, args.protoc, args.plugin)
    import grpc
    channel = grpc.insecure_channel(args.server)
    grpc.channel_ready_future(channel).result(timeout=30)
    agent = Agent(pb_grpc.VlmServiceStub(channel), pb, args.api_key)

    latencies, wins, steps, right, valid = [], 0, 0, 0, 0
    for i in range(args.episodes):
        seed = args.seed + i
        ep_ms = []

        def model_policy(g, history):
            action, ms = agent.act(game.last_four(history), f"demo-{seed}")
            ep_ms.append(ms)
            return action["button"] if action else None

        won, n, r, v = play(seed, model_policy)
        wins += won
        steps, right, valid = steps + n, right + r, valid + v
        latencies += ep_ms
        print(f"episode {i + 1}/{args.episodes} seed {seed}: {'won ' if won else 'lost'} in {n} steps "
              f"(shortest {game.Game(seed).shortest_solution()}), expert's button {r}/{n}, "
              f"latency p50 {percentile(ep_ms, 50):.1f} ms", flush=True)

    rng = random.Random(args.seed)
    random_wins = sum(play(args.seed + i, lambda g, h: rng.choice(game.BUTTONS))[0]
                      for i in range(args.episodes))
    summary = {
        "episodes": args.episodes, "seed": args.seed, "steps": steps,
        "success_rate": wins / max(1, args.episodes),
        "random_success_rate": random_wins / max(1, args.episodes),
        "button_accuracy": right / max(1, steps), "valid_actions": valid / max(1, steps),
        "latency_ms": {"p50": percentile(latencies, 50), "p90": percentile(latencies, 90),
                       "p99": percentile(latencies, 99),
                       "mean": sum(latencies) / max(1, len(latencies))},
    }
    print(f"summary: won {wins}/{args.episodes} (random policy {random_wins}/{args.episodes}), "
          f"expert's button on {100 * summary['button_accuracy']:.1f}% of {steps} steps, "
          f"latency p50 {summary['latency_ms']['p50']:.1f} ms p90 {summary['latency_ms']['p90']:.1f} ms "
          f"p99 {summary['latency_ms']['p99']:.1f} ms", flush=True)
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
