"""The torch side of bench_sam.py: the official SAM-Audio (tools/parity/sam_audio_ref.py),
built once per DiT width, answering JSON lines ``{"op": ..., ...}`` with ``{"time": s}``.

Runs in the parity venv (torch 2.13 CPU and the reference's sources):
``.parity-venv/bin/python tools/bench/sam_worker.py THREADS``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parity"))
import sam_audio_ref as ref  # noqa: E402
import torch  # noqa: E402

ref.setup()
torch.set_num_threads(int(sys.argv[1]))
MODELS: dict = {}


def model_for(dit: dict):
    key = json.dumps(dit, sort_keys=True)
    if key not in MODELS:
        MODELS.clear()  # one model at a time: the base width is 4.6 GB
        m = ref.build_reference(dit, t5=ref.SMALL_T5, seed=0)
        ref.fixed_watermark(m)
        MODELS[key] = m
    return MODELS[key]


def separate_long(model, audio, chunk, overlap, ode_opt, text):
    """The reference has no chunked mode: the same chunks through its separate()."""
    hop, n = chunk - overlap, audio.shape[-1]
    starts = [0] if n <= chunk else [i * hop for i in range(math.ceil((n - overlap) / hop))]
    proc = ref.processor(model)
    for i, s in enumerate(starts):
        batch = proc(descriptions=[text], audios=[audio[:, s : s + chunk]])
        torch.manual_seed(42 + i)
        model.separate(batch, ode_opt=ode_opt)


@torch.inference_mode()
def run(req: dict) -> dict:
    model = model_for(req["dit"])
    gen = torch.Generator().manual_seed(0)
    audio = 0.1 * torch.randn(1, int(req["seconds"] * 48_000), generator=gen)
    frames = math.ceil(audio.shape[-1] / 1920)
    t = time.perf_counter()
    if req["op"] == "encode":
        model.audio_codec(audio[None])
    elif req["op"] == "decode":
        model.audio_codec.decode(torch.randn(1, 128, frames, generator=gen))
    elif req["op"] == "dit_step":
        batch = ref.processor(model)(descriptions=["man speaking"], audios=[audio])
        args = model._get_forward_args(batch)
        x = torch.randn(1, frames, 256, generator=gen)
        t = time.perf_counter()
        model.forward(noisy_audio=x, time=torch.full((1,), 0.5), **args)
    elif req["op"] == "separate_long":
        opt = {"method": req["ode"]["method"], "options": {"step_size": req["ode"]["step_size"]}}
        separate_long(model, audio, req["chunk"], req["overlap"], opt, "man speaking")
    return {"time": time.perf_counter() - t}


print(json.dumps({"torch": torch.__version__}), flush=True)
for line in sys.stdin:
    print(json.dumps(run(json.loads(line))), flush=True)
