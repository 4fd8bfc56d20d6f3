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


# Convolutions with their bias (and a ResNet's residual add), channels_last as PyTorch runs them best;
# the names match CONVS in bench/gpu-check.ts.
CL = torch.channels_last
for name, (n, c, h, w_), k, r, stride, residual in [
    ("conv3x3 320ch 128x128 b2 +bias", (2, 320, 128, 128), 320, 3, 1, False),
    ("conv3x3 640ch 64x64 b2 +bias+residual", (2, 640, 64, 64), 640, 3, 1, True),
    ("conv3x3 1280ch 32x32 b2 +bias", (2, 1280, 32, 32), 1280, 3, 1, False),
    ("conv3x3 stride2 320ch 128x128 b2 +bias", (2, 320, 128, 128), 320, 3, 2, False),
    ("conv1x1 320->640ch 64x64 b2 +bias", (2, 320, 64, 64), 640, 1, 1, False),
    ("conv3x3 vae 128ch 1024x1024 +bias", (1, 128, 1024, 1024), 128, 3, 1, False),
]:
    pad = 1 if r == 3 else 0
    x = torch.randn(n, c, h, w_, device=dev, dtype=torch.half).to(memory_format=CL)
    w = (torch.randn(k, c, r, r, device=dev, dtype=torch.half) * 0.02).to(memory_format=CL)
    b = torch.randn(k, device=dev, dtype=torch.half)
    y = F.conv2d(x, w, b, stride, pad)
    res = torch.randn_like(y) if residual else None
    fn = (lambda: F.conv2d(x, w, b, stride, pad) + res) if residual else (lambda: F.conv2d(x, w, b, stride, pad))
    print(f"{name}\t{bench(fn, 20 if n * c * h * w_ > 1e8 else 50):.3f}")
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
x = torch.randn(2, 4096, 5120, device=dev, dtype=torch.half)


def geglu():
    a, gate = x.chunk(2, dim=-1)
    return a * F.gelu(gate)


print(f"geglu 2x4096x(2x2560)\t{bench(geglu):.3f}")
