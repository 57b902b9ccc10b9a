"""What the workspace's command lines (``mlx-audio-sts``, ``mlx-audio-tts``) share."""

from __future__ import annotations

import sys


def run_subcommand(args) -> int:
    """Runs ``args.func(args)`` (the subcommand argparse chose) and returns its exit code:
    the bad-input errors (``ValueError``, ``FileNotFoundError``, ``RuntimeError``) print as
    ``error: ...`` and give 1, Ctrl-C prints ``interrupted`` and gives 130."""
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
