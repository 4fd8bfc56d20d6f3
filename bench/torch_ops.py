# PyTorch fp16 timings of the UNet's and VAE's op shapes at 1024x1024 (batch 2), the peer numbers for gpu-check;
# each line's name matches an op case in bench/gpu-check.ts.
import torch
import torch.nn.functional as F

assert torch.cuda.is_available()
dev = torch.device("cuda")
torch.backends.cudnn.benchmark = True


def bench(fn, reps=50):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


for ch, res in [(320, 128), (640, 64), (1280, 32)]:
    x = torch.randn(2, ch, res, res, device=dev, dtype=torch.half)
    w = torch.randn(ch, ch, 3, 3, device=dev, dtype=torch.half) * 0.02
    print(f"conv3x3 {ch}ch {res}x{res} b2\t{bench(lambda: F.conv2d(x, w, padding=1)):.3f}")
for m, k, n in [(2 * 4096, 640, 640), (2 * 4096, 640, 5120), (2 * 4096, 2560, 640), (2 * 1024, 1280, 1280), (2 * 1024, 1280, 10240), (2 * 1024, 5120, 1280), (2 * 77, 2048, 1280)]:
    a = torch.randn(m, k, device=dev, dtype=torch.half)
    b = torch.randn(n, k, device=dev, dtype=torch.half)
    print(f"gemm {m}x{k}x{n}\t{bench(lambda: a @ b.t()):.3f}")
for tokens, heads in [(4096, 10), (1024, 20)]:
    q = torch.randn(2, heads, tokens, 64, device=dev, dtype=torch.half)
    print(f"sdpa {tokens} tokens {heads} heads\t{bench(lambda: F.scaled_dot_product_attention(q, q, q)):.3f}")
q = torch.randn(1, 1, 16384, 512, device=dev, dtype=torch.half)
print(f"sdpa vae 16384 tokens d512\t{bench(lambda: F.scaled_dot_product_attention(q, q, q), 10):.3f}")
x = torch.randn(2, 320, 128, 128, device=dev, dtype=torch.half)
g, b = torch.ones(320, device=dev, dtype=torch.half), torch.zeros(320, device=dev, dtype=torch.half)
print(f"group_norm+silu 2x320x128x128 g32\t{bench(lambda: F.silu(F.group_norm(x, 32, g, b, 1e-5))):.3f}")
x = torch.randn(1, 128, 1024, 1024, device=dev, dtype=torch.half)
g, b = torch.ones(128, device=dev, dtype=torch.half), torch.zeros(128, device=dev, dtype=torch.half)
print(f"group_norm vae 1x128x1024x1024 g32\t{bench(lambda: F.group_norm(x, 32, g, b, 1e-6)):.3f}")
x = torch.randn(2, 4096, 640, device=dev, dtype=torch.half)
g, b = torch.ones(640, device=dev, dtype=torch.half), torch.zeros(640, device=dev, dtype=torch.half)
print(f"layer_norm 2x4096x640\t{bench(lambda: F.layer_norm(x, (640,), g, b, 1e-5)):.3f}")
