"""Inclusive and self shares per function from ``py-spy record -f raw`` output (collapsed stacks), line numbers
dropped, as docs/benchmarks/http-gaps.md reads them.

Run: python -m bench.probes.spy_shares FILE [TOP] [REGEX]   (REGEX: only the functions matching it)"""

from __future__ import annotations

import re
import sys
from collections import Counter


def shares(path: str) -> tuple[int, Counter, Counter]:
    """(total samples, inclusive samples per function, self samples per function)."""
    inclusive: Counter = Counter()
    own: Counter = Counter()
    total = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [re.sub(r":\d+\)", ")", frame) for frame in stack.split(";")]
            for frame in set(frames):
                inclusive[frame] += n
            own[frames[-1]] += n
    return total, inclusive, own


def main() -> None:
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    pattern = re.compile(sys.argv[3]) if len(sys.argv) > 3 else None
    total, inclusive, own = shares(path)
    print(f"total samples {total}")
    for title, counter in (("inclusive", inclusive), ("self", own)):
        print(f"--- {title}")
        rows = [(k, v) for k, v in counter.most_common() if pattern is None or pattern.search(k)]
        for name, n in rows[:top]:
            print(f"{100 * n / total:5.1f}% {name}")


if __name__ == "__main__":
    main()
