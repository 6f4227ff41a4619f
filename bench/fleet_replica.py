"""A simulated teacher replica for `bench/fleet.py`: answers Self-Instruct's prompts in their layouts.

One process, one `FakeReplica` (bench/fake_replica.py: `--capacity` requests at once, `--service-ms`
each, queueing beyond), whose replies read like a teacher's, drawn from the texts of
`../shared/bench/instructions_52k.jsonl` with an RNG seeded by the request (so a request always gets
the same reply, and a cache or a rerun sees the same answers):

- an instruction prompt (ends in an open number, `9.`): the next items up to 15, one text each;
- a classification question (`Is it classification?`): ` Yes` for about a quarter, else ` No`;
- an output-first instance prompt (its examples show `Class label:`): two to three labelled inputs;
- an input-first one: one to three `Example k` blocks of `Input:` / `Output:`, or a bare `Output:`.

Not a model: a stand-in for a fleet, so the pipeline's own work per request and per kept task is what
is measured. Prints its base URL as a JSON line, serves until stdin closes, then prints how many
requests it answered (and how many distinct prompts) as a JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_replica import FakeReplica  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "bench" / "instructions_52k.jsonl"
OPEN_NUMBER = re.compile(r"\d+\.")
LABELS = ("Positive", "Negative", "Neutral", "Yes", "No", "Spam", "Not spam")


def load_texts(path: Path) -> list[str]:
    texts = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            text = " ".join(json.loads(line)["instruction"].split())
            if text:
                texts.append(text)
    return texts


class TeacherWriter:
    """(request body, prompt) -> (reply, finish reason), deterministic per request."""

    def __init__(self, texts: list[str]):
        self.texts = texts

    def _rng(self, body: dict, prompt: str) -> random.Random:
        digest = hashlib.sha256(f"{body.get('seed')}:{prompt}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def __call__(self, body: dict, prompt: str) -> tuple[str, str]:
        rng = self._rng(body, prompt)
        tail = prompt.rstrip()
        if tail.endswith("Is it classification?"):
            return (" Yes" if rng.random() < 0.25 else " No"), "stop"
        last = tail.rsplit("\n", 1)[-1]
        if OPEN_NUMBER.fullmatch(last):  # an instruction list, open at its last number
            number = int(last.rstrip("."))
            items = [rng.choice(self.texts) for _ in range(number, 16)]
            text = " " + "\n".join(
                item if k == 0 else f"{number + k}. {item}" for k, item in enumerate(items)
            )
            return text, "stop"
        if "Class label:" in prompt:
            count = rng.randint(2, 3)
            text = "\n".join(
                f"Class label: {rng.choice(LABELS)}\n{rng.choice(self.texts)}" for _ in range(count)
            )
            return text, "stop"
        count = rng.randint(0, 3)
        if count == 0:
            return f"Output: {rng.choice(self.texts)}", "stop"
        blocks = [
            f"Example {k}\nInput: {rng.choice(self.texts)}\nOutput: {rng.choice(self.texts)}"
            for k in range(1, count + 1)
        ]
        return "\n".join(blocks), "stop"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=64)
    parser.add_argument("--service-ms", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", default=str(CORPUS))
    args = parser.parse_args()
    writer = TeacherWriter(load_texts(Path(args.corpus)))
    replica = FakeReplica(args.capacity, args.service_ms / 1000, seed=args.seed, writer=writer).start()
    print(json.dumps(replica.base_url), flush=True)
    sys.stdin.read()  # until the bench closes our stdin
    replica.stop()
    answered = replica.stats.answered
    print(json.dumps({"answered": sum(answered.values()), "distinct": len(answered)}), flush=True)


if __name__ == "__main__":
    main()
