"""The fake OpenAI server (tests/fake_upstream.py) in a process of its own, for the concurrency benchmark.

    python -m benchmarks.upstream_process REPLIES LATENCY [--no-spec-check]

Prints its base URL, answers REPLIES requests after LATENCY seconds each (then default replies), and when
its stdin closes prints one JSON line: how many Responses requests came, how many images each carried, and
the CPU seconds it used. With --no-spec-check it does not check the bodies against OpenAI's spec (the test
suite's instrument, not an upstream's work), for a benchmark that times the server's own work per request.
In its own process its threads do not compete with the server under test for the GIL, as OpenAI's do not.
"""

from __future__ import annotations

import json
import os
import sys

from tests import fake_upstream


def main() -> None:
    replies, latency = int(sys.argv[1]), float(sys.argv[2])
    # socketserver's default listen backlog of 5 makes the kernel drop the SYNs of 50 simultaneous connections
    # (the client retries a second later): a real API front end accepts them, so the fake must too.
    fake_upstream.UpstreamServer.request_queue_size = 256
    with fake_upstream.FakeUpstream(check_spec="--no-spec-check" not in sys.argv[3:]) as upstream:
        for _ in range(replies):
            upstream.add_reply(fake_upstream.Reply(text="A generated test picture.", delay=latency))
        sys.stdout.write(upstream.base_url + "\n")
        sys.stdout.flush()
        sys.stdin.read()
        bodies = upstream.responses_bodies()
        images = [
            sum(
                1
                for item in body.get("input", [])
                for part in (item.get("content") if isinstance(item.get("content"), list) else [])
                if part.get("type") == "input_image"
            )
            for body in bodies
        ]
        cpu = os.times()
        report = {"responses": len(bodies), "images": images, "cpu_s": round(cpu.user + cpu.system, 3)}
        sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
