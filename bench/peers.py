"""The peers' side of `npm run bench:peers`: PyTorch (diffusers) and ONNX Runtime on the work that
bench/peers.ts times on our CPU backend. Run by that script as `$PG25_PEERS_PYTHON bench/peers.py ITEM`
with OMP_NUM_THREADS / PG25_THREADS set; needs torch, diffusers (on PYTHONPATH), transformers,
onnxruntime and onnx in that Python (BENCHMARKS.md says how to build the venv offline).

`$PG25_PEERS_PYTHON bench/peers.py ITEM bf16` runs PyTorch's side with the model and its inputs in bfloat16
(oneDNN's bf16 kernels on CPUs that have them), as `.to(torch.bfloat16)` does.

Prints `RESULT <who> <item> <median ms> <runs...>`: one warm-up call, then N timed calls; then
`RSS <who> <item> <bytes>`, the process's peak resident memory."""
import json
import os
import resource
import statistics
import sys
import time

import torch

THREADS = int(os.environ.get("PG25_THREADS", "2"))
torch.set_num_threads(THREADS)
torch.set_num_interop_threads(1)
REF = os.environ["PG25_REFERENCE"]
FULL = os.path.join(REF, "full")
TINY = os.path.join(REF, "tiny-pg25")

from diffusers import AutoencoderKL, EDMDPMSolverMultistepScheduler, StableDiffusionXLPipeline, UNet2DConditionModel  # noqa: E402


def timed(who, item, reps, fn):
    fn()
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1e3)
    print(f"RESULT {who} {item} {statistics.median(runs):.1f} " + " ".join(f"{r:.1f}" for r in runs), flush=True)


def config(name):
    with open(os.path.join(FULL, name, "config.json")) as f:
        return json.load(f)


def unet_inputs(gen, res, ctx_dim, text_dim, batch=2):
    px = res * 8
    sample = torch.randn(batch, 4, res, res, generator=gen)
    ctx = torch.randn(batch, 77, ctx_dim, generator=gen)
    added = {"text_embeds": torch.randn(batch, text_dim, generator=gen),
             "time_ids": torch.tensor([[px, px, 0, 0, px, px]] * batch, dtype=torch.float32)}
    return sample, ctx, added


def main(item, dtype):
    gen = torch.Generator().manual_seed(5)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {dtype}", flush=True)
    with torch.inference_mode():
        if item in ("unet32", "unet64"):
            # Random initialisation from the real config: the same shapes and work as the real weights.
            unet = UNet2DConditionModel.from_config(config("unet")).eval().to(dtype)
            sample, ctx, added = unet_inputs(gen, 32 if item == "unet32" else 64, 2048, 1280)
            sample, ctx = sample.to(dtype), ctx.to(dtype)
            added = {k: v.to(dtype) for k, v in added.items()}
            timed("pytorch", item, 3, lambda: unet(sample, 0.5, encoder_hidden_states=ctx, added_cond_kwargs=added).sample)
        elif item == "vae":
            vae = AutoencoderKL.from_config(config("vae")).eval().to(dtype)
            lat = torch.randn(1, 4, 32, 32, generator=gen).to(dtype)
            timed("pytorch", item, 3, lambda: vae.decode(lat).sample)
        elif item == "pipeline":
            pipe = StableDiffusionXLPipeline.from_pretrained(TINY, variant="fp16", torch_dtype=dtype)
            pipe.scheduler = EDMDPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
            pipe.set_progress_bar_config(disable=True)
            timed("pytorch", item, 3, lambda: pipe("a cat", num_inference_steps=30, height=128, width=128, guidance_scale=3.0,
                                                   generator=torch.Generator().manual_seed(1), output_type="np"))
        elif item == "tinyunet":
            tiny_onnx(gen)
        else:
            raise SystemExit(f"unknown item {item}: unet32 unet64 vae pipeline tinyunet")
    print(f"RSS pytorch {item} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}", flush=True)


def tiny_onnx(gen):
    """The tiny UNet in eager PyTorch, then exported to ONNX and run by onnxruntime on the same inputs."""
    import tempfile

    import onnxruntime as ort
    unet = UNet2DConditionModel.from_pretrained(os.path.join(TINY, "unet"), variant="fp16", torch_dtype=torch.float32).eval()
    sample, ctx, added = unet_inputs(gen, 16, 64, 32)
    t = torch.tensor([0.5])

    class Flat(torch.nn.Module):  # positional inputs only, as the exporter wants
        def __init__(self, u):
            super().__init__()
            self.u = u

        def forward(self, x, t, ctx, te, ids):
            return self.u(x, t, encoder_hidden_states=ctx, added_cond_kwargs={"text_embeds": te, "time_ids": ids}).sample

    flat = Flat(unet).eval()
    args = (sample, t, ctx, added["text_embeds"], added["time_ids"])
    timed("pytorch", "tinyunet", 10, lambda: flat(*args))
    names = ["x", "t", "ctx", "te", "ids"]
    path = os.path.join(tempfile.mkdtemp(), "tiny_unet.onnx")
    torch.onnx.export(flat, args, path, input_names=names, output_names=["out"], dynamo=False, opset_version=17)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in sess.get_inputs()}  # the exporter drops inputs the graph folds away
    feeds = {n: a.numpy() for n, a in zip(names, args) if n in wanted}
    timed("onnxruntime", "tinyunet", 10, lambda: sess.run(None, feeds))


if __name__ == "__main__":
    main(sys.argv[1], torch.bfloat16 if sys.argv[2:] == ["bf16"] else torch.float32)
