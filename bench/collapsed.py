"""Summarise a collapsed-stack profile (py-spy record -f raw): self and inclusive time per function.

    python bench/collapsed.py PROFILE.txt [--top 30] [--lines]
"""

import argparse
import collections
import re


def frame_key(frame, lines):
    """'func (path/to/file.py:123)' -> 'func (file.py:123)' or 'func (file.py)'."""
    match = re.match(r"(.*) \((.*?):?(\d+)?\)$", frame.strip())
    if not match:
        return frame.strip()
    func, path, line = match.groups()
    short = "/".join(path.split("/")[-2:])
    return f"{func} ({short}:{line})" if lines and line else f"{func} ({short})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--lines", action="store_true", help="keep line numbers (finer)")
    args = parser.parse_args()
    own = collections.Counter()
    inclusive = collections.Counter()
    total = 0
    with open(args.profile, encoding="utf-8") as profile:
        for raw in profile:
            raw = raw.rstrip("\n")
            if not raw:
                continue
            stack, _, count = raw.rpartition(" ")
            count = int(count)
            frames = [frame_key(f, args.lines) for f in stack.split(";") if f]
            # Skip the process/thread header frames py-spy may add.
            frames = [f for f in frames if not f.startswith(("process ", "thread "))]
            total += count
            if frames:
                own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
    print(f"{total} samples")
    print("\nself time")
    for frame, count in own.most_common(args.top):
        print(f"{100 * count / total:6.1f}%  {frame}")
    print("\ninclusive time")
    for frame, count in inclusive.most_common(args.top):
        print(f"{100 * count / total:6.1f}%  {frame}")


if __name__ == "__main__":
    main()
