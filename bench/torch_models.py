# PyTorch's time for the whole-model work gpu-check times for ours, in the same device call: one UNet call
# (batch 2: guidance's halves) and one VAE decode at the given latent side, diffusers' models built from
# the real configs with random weights (the time does not depend on the values), fp16 (bf16 for a VAE
# with force_upcast, as ours) in channels_last, eager with scaled_dot_product_attention. Prints
# `name<TAB>ms` lines, as torch_ops.py does.
#   python3 bench/torch_models.py <model folder> [latent side, 128] [device, cuda] [repetitions, 5]
# diffusers is not installed on the device: gpu-check.sh pack carries its source in .dev/.
import sys
import time

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

root = sys.argv[1]
side = int(sys.argv[2]) if len(sys.argv) > 2 else 128
dev = torch.device(sys.argv[3] if len(sys.argv) > 3 else "cuda")
reps = int(sys.argv[4]) if len(sys.argv) > 4 else 5
gpu = dev.type == "cuda"
CL = torch.channels_last


def sync():
    if gpu:
        torch.cuda.synchronize()


def bench(fn):
    fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1000)
    return sorted(times)[len(times) // 2]


torch.manual_seed(0)
with torch.inference_mode():
    # Built on the device: initialising 2.6B parameters on the host would take most of a device call.
    with dev:
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(f"{root}/unet"))
    dtype = torch.float16 if gpu else torch.float32
    unet = unet.to(dev, dtype).to(memory_format=CL).eval()
    c = unet.config
    pooled = c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim
    x = torch.randn(2, c.in_channels, side, side, device=dev, dtype=dtype).to(memory_format=CL)
    ctx = torch.randn(2, 77, c.cross_attention_dim, device=dev, dtype=dtype)
    cond = {"text_embeds": torch.randn(2, pooled, device=dev, dtype=dtype),
            "time_ids": torch.tensor([[8 * side, 8 * side, 0, 0, 8 * side, 8 * side]] * 2, device=dev, dtype=dtype)}
    print(f"unet_step\t{bench(lambda: unet(x, 500, encoder_hidden_states=ctx, added_cond_kwargs=cond).sample):.3f}", flush=True)
    del unet
    if gpu:
        torch.cuda.empty_cache()
    with dev:
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(f"{root}/vae"))
    vdtype = (torch.bfloat16 if vae.config.force_upcast else torch.float16) if gpu else torch.float32
    vae = vae.to(dev, vdtype).to(memory_format=CL).eval()
    z = torch.randn(1, vae.config.latent_channels, side, side, device=dev, dtype=vdtype).to(memory_format=CL)
    print(f"vae_decode\t{bench(lambda: vae.decode(z).sample):.3f}", flush=True)
