"""Runs the bad-input suite (cases.py) in worker processes and prints what each input did.

    python tests/bad_inputs/runner.py [-k SUBSTRING] [--workers N] [--timeout S]

Workers take cases one at a time; a worker that dies is a crash of the case it was running
(and is replaced), one that does not answer within the timeout is a hang (killed, replaced).
Outcomes: handled (audio, or a refusal the case checked), refused (the library's error of the
right kind, naming the file or argument), wrong (a wrong answer, lost data, or an unclear
error), crash, hang. Exits 1 unless every input was handled or refused."""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
BAD = ("wrong", "crash", "hang")


def _own_errors() -> tuple[type, ...]:
    """The packages' own error classes: refusals that name what they refuse by design."""
    import mlx_audio_io

    import fast_mp3_augment
    import mlx_audio_streaming

    return (
        mlx_audio_io.AudioIOError,
        fast_mp3_augment.Mp3AugmentError,
        fast_mp3_augment.RoundTripError,
        mlx_audio_streaming.PipelineError,
    )


def _judge(case, e: BaseException) -> tuple[str, str]:
    """An error raised by the library: refused when it is of the right kind and says what."""
    from cases import Wrong

    text = f"{type(e).__name__}: {e}"
    if isinstance(e, Wrong):
        return "wrong", str(e)
    if isinstance(e, UnicodeError) or type(e).__name__ == "JSONDecodeError":
        return "wrong", f"raw {text}"
    if case.needle is not None and not re.search(case.needle, str(e)):
        return "wrong", f"the error does not name {case.needle!r}: {text}"
    if isinstance(e, _own_errors()):
        return "refused", text
    if isinstance(e, (ValueError, TypeError, FileNotFoundError, RuntimeError)) and case.needle:
        return "refused", text
    return "wrong", f"unclear error {text}"


def worker(media: str) -> None:
    """Reads case indices on stdin, answers one JSON line each on stdout."""
    sys.path.insert(0, str(HERE))
    import cases as mod

    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what the cases print must not mix with the answers
    listed = mod.all_cases()
    base = Path(tempfile.mkdtemp(prefix="bad-inputs-"))
    for line in sys.stdin:
        i = int(line)
        case = listed[i]
        work = base / str(i)
        work.mkdir()
        os.chdir(work)
        try:
            getattr(mod, case.func)(mod.Context(Path(media), work), *case.args)
            outcome, detail = "handled", ""
        except Exception as e:  # judged, then reported
            outcome, detail = _judge(case, e)
            if outcome == "wrong":
                detail += "\n" + "".join(traceback.format_exception(e)[-3:])
        os.chdir(base)
        shutil.rmtree(work, ignore_errors=True)
        out.write(json.dumps({"i": i, "outcome": outcome, "detail": detail[:2000]}) + "\n")
        out.flush()
    shutil.rmtree(base, ignore_errors=True)


class Worker:
    def __init__(self, media: str):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", media],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",  # a case may print bytes (a file saved to stdout by mistake)
            bufsize=1,
        )
        self.case: int | None = None
        self.started = 0.0

    def give(self, i: int) -> None:
        self.case, self.started = i, time.monotonic()
        self.proc.stdin.write(f"{i}\n")
        self.proc.stdin.flush()

    def stop(self) -> str:
        """Kills the worker; returns the end of what it wrote on stderr."""
        self.proc.kill()
        _, err = self.proc.communicate()
        return err[-1500:]


def run(selected: list[int], listed, media: str, workers: int, timeout: float) -> dict:
    results: dict[int, dict] = {}
    todo = list(selected)
    pool = [Worker(media) for _ in range(min(workers, len(todo)))]
    for w in pool:
        if todo:
            w.give(todo.pop(0))
    while any(w.case is not None for w in pool):
        busy = [w for w in pool if w.case is not None]
        ready, _, _ = select.select([w.proc.stdout for w in busy], [], [], 1.0)
        for w in busy:
            line = w.proc.stdout.readline() if w.proc.stdout in ready else None
            if line:
                r = json.loads(line)
                results[r["i"]] = r
            elif line == "":  # the worker died running this case
                code = w.proc.wait()
                results[w.case] = {
                    "outcome": "crash",
                    "detail": f"exit {code}\n{w.proc.stderr.read()[-1500:]}",
                }
            elif time.monotonic() - w.started > timeout:
                results[w.case] = {"outcome": "hang", "detail": f"no answer in {timeout} s"}
                w.stop()
                line = ""
            else:
                continue
            if line == "":
                pool[pool.index(w)] = w = Worker(media)
            w.case = None
            if todo:
                w.give(todo.pop(0))
    for w in pool:
        w.proc.stdin.close()
        w.proc.wait()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("-k", default="", help="run the cases whose name contains this")
    ap.add_argument("--workers", type=int, default=max(2, os.cpu_count() or 1))
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds per input")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker)
        return 0
    sys.path.insert(0, str(HERE))
    import cases as mod

    listed = mod.all_cases()
    selected = [i for i, c in enumerate(listed) if args.k in f"{c.category}: {c.name}"]
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bad-inputs-media-") as media:
        mod.make_media(Path(media))
        results = run(selected, listed, media, args.workers, args.timeout)
    by_category: dict[str, Counter] = {}
    for i in selected:
        by_category.setdefault(listed[i].category, Counter())[results[i]["outcome"]] += 1
    print(f"{'category':<26} {'inputs':>6} {'handled':>8} {'refused':>8}  wrong crash hang")
    for category, n in by_category.items():
        print(
            f"{category:<26} {sum(n.values()):>6} {n['handled']:>8} {n['refused']:>8}  "
            f"{n['wrong']:>5} {n['crash']:>5} {n['hang']:>4}"
        )
    failed = [i for i in selected if results[i]["outcome"] in BAD]
    for i in failed:
        c = listed[i]
        print(f"\n{results[i]['outcome'].upper()}: {c.category}: {c.name}\n{results[i]['detail']}")
    total = Counter(r["outcome"] for r in results.values())
    print(
        f"\nbad-input suite: {len(selected)} inputs in {time.monotonic() - start:.0f} s: "
        f"{total['handled']} handled, {total['refused']} refused with a clear error, "
        f"{total['wrong']} wrong answers or lost data, {total['crash']} crashes, "
        f"{total['hang']} hangs"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
