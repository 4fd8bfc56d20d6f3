"""Trains the built-in demo model on the shape world (world.py) and writes it in Playground v2.5's layout.

  python scripts/demo-model/train.py --work /tmp/demo-train --out models/demo

Phases, each resumable from its checkpoint in --work: the VAE as an autoencoder, then the UNet and
both text encoders together with the EDM objective (sigma_data 0.5, c_in/c_skip/c_out
preconditioning, F-prediction that diffusers' EDM schedulers call "epsilon", c_noise = ln(sigma)/4)
and classifier-free-guidance dropout to the zero embeddings that force_zeros_for_empty_prompt
gives at inference. Loss curves go to --work/loss-*.csv; the exported weights are the EMA weights.
"""
import argparse
import copy
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

import model_layout as layout
import world

SIGMA_DATA = 0.5
P_STD = 1.4  # log-normal training sigmas; their mean is --sigma-mean
CFG_DROP = 0.1
TIME_IDS = [world.SIZE, world.SIZE, 0, 0, world.SIZE, world.SIZE]


def parse():
    p = argparse.ArgumentParser()
    p.add_argument('--work', required=True)
    p.add_argument('--out', required=True)
    p.add_argument('--images', type=int, default=12000)
    p.add_argument('--vae-steps', type=int, default=1000)
    p.add_argument('--decoder-steps', type=int, default=1200)
    p.add_argument('--unet-steps', type=int, default=6000)
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--seed', type=int, default=2026)
    p.add_argument('--threads', type=int, default=1, help="PyTorch's CPU threads")
    p.add_argument('--minutes', type=float, default=0, help='stop (resumably) after this many minutes of this run')
    p.add_argument('--export-only', action='store_true', help='write the model from the last checkpoints, without training')
    p.add_argument('--sigma-mean', type=float, default=-0.4,
                   help="mean log-sigma of training noise: above EDM's -1.2 favours layout, lower favours edges and corners")
    p.add_argument('--init-from', help='a model folder this script wrote (models/demo): when --work has no checkpoints, '
                   'train on from its weights, with a fresh optimiser')
    p.add_argument('--init-step', type=int, default=0, help="the UNet step --init-from's weights were exported at")
    p.add_argument('--vae-teacher', help="a model folder whose VAE gives the latents: this run's VAE (layout.VAE) learns "
                   "to encode to them and to decode them, so a wider VAE replaces a narrower one under a UNet trained on its latents")
    p.add_argument('--distil-steps', type=int, default=500, help='encoder steps against --vae-teacher')
    return p.parse_args()


class Log:
    def __init__(self, path):
        self.f = open(path, 'a')

    def write(self, step, loss, extra=''):
        self.f.write(f'{step},{loss:.6f}{extra}\n')
        self.f.flush()


def load_checkpoint(path):
    return torch.load(path, weights_only=False) if os.path.exists(path) else None


def save_checkpoint(path, state):
    torch.save(state, path + '.tmp')
    os.replace(path + '.tmp', path)


def cosine_rate(opt, peak, step, total, warmup=0):
    """Sets the learning rate: peak, decaying to 0 along a half cosine over total steps, after a linear warm-up."""
    for g in opt.param_groups:
        g['lr'] = peak * (min(1, (step + 1) / warmup) if warmup else 1) * 0.5 * (1 + np.cos(np.pi * step / total))


def checkpoint_and_check_time(path, label, step, last, loss, vae, opt, out_of_time):
    """Saves a VAE phase's checkpoint every 100 steps, at its last step and when time is up; True when it is up."""
    up = out_of_time()
    if step % 100 == 0 or step == last or up:
        save_checkpoint(path, {'model': vae.state_dict(), 'opt': opt.state_dict(), 'step': step})
        print(f'{label} {step} {loss.item():.5f} {time.time():.0f}', flush=True)
    return up


def data(args):
    cache = os.path.join(args.work, 'images.npz')
    if not os.path.exists(cache):
        images, scenes = world.dataset(args.images, args.seed)
        np.savez(cache, images=images, scenes=json.dumps(scenes))
    z = np.load(cache)
    return z['images'], json.loads(str(z['scenes']))


def to_tensor(images):
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def descend(opt, loss, log, step):
    """One optimiser step; every 10th step's loss goes to the loss curve. Returns the new step count."""
    opt.zero_grad()
    loss.backward()
    opt.step()
    if (step + 1) % 10 == 0:
        log.write(step + 1, loss.item())
    return step + 1


def train_vae(args, vae, images, out_of_time):
    path = os.path.join(args.work, 'vae.pt')
    ck = load_checkpoint(path)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0)
    step = 0
    if ck:
        vae.load_state_dict(ck['model'])
        opt.load_state_dict(ck['opt'])
        step = ck['step']
    if step >= args.vae_steps:
        return True
    rng = np.random.default_rng(args.seed + 1 + step)
    torch.manual_seed(args.seed + step)
    log = Log(os.path.join(args.work, 'loss-vae.csv'))
    vae.train()
    while step < args.vae_steps:
        # 64x64 crops: a quarter of the cost per step, and flat shapes look alike at any offset.
        oy, ox = rng.integers(0, world.SIZE - 64 + 1, size=2)
        x = to_tensor(images[rng.integers(len(images), size=16), oy:oy + 64, ox:ox + 64])
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        # Reconstruction plus a small KL term that keeps the posterior's spread small but finite.
        loss = F.mse_loss(rec, x) + 0.05 * F.l1_loss(rec, x) + 1e-6 * post.kl().mean()
        step = descend(opt, loss, log, step)
        if checkpoint_and_check_time(path, 'vae', step, args.vae_steps, loss, vae, opt, out_of_time):
            return False
    return True


def refine_decoder(args, vae, images, out_of_time, teacher=None):
    """Trains the decoder alone with a decaying rate while the latents the UNet learns stay as they are: the
    encoder's own (decoded colours and edges sharpen), or with a teacher, its posterior (mean, std) per image,
    which a new decoder learns from scratch."""
    path = os.path.join(args.work, 'vae-decoder.pt')
    ck = load_checkpoint(path)
    step = 0
    if ck:
        vae.load_state_dict(ck['model'])
        step = ck['step']
    if step >= args.decoder_steps or args.export_only:
        return True
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    peak = 1e-3 if teacher else 3e-4
    opt = torch.optim.AdamW(params, lr=peak, weight_decay=0)
    if ck:
        opt.load_state_dict(ck['opt'])
    rng = np.random.default_rng(args.seed + 4 + step)
    gen = torch.Generator().manual_seed(args.seed + 5 + step)
    log = Log(os.path.join(args.work, 'loss-decoder.csv'))
    while step < args.decoder_steps:
        if teacher:
            # 64x64 crops at whole latent cells, their 8x8 latents cut from the whole picture's.
            idx = rng.integers(len(images), size=12)
            ly, lx = rng.integers(0, world.SIZE // 8 - 8 + 1, size=2)
            x = to_tensor(images[idx, 8 * ly:8 * ly + 64, 8 * lx:8 * lx + 64])
            mean, std = (t[idx, :, ly:ly + 8, lx:lx + 8] for t in teacher)
            # The UNet learnt the posterior means: a quarter of the spread keeps edges sharp there.
            z = mean + 0.25 * std * torch.randn(mean.shape, generator=gen)
        else:
            oy, ox = rng.integers(0, world.SIZE - 64 + 1, size=2)
            x = to_tensor(images[rng.integers(len(images), size=16), oy:oy + 64, ox:ox + 64])
            with torch.no_grad():
                z = vae.encode(x).latent_dist.sample(generator=gen)
        rec = vae.decode(z).sample
        # More L1 with a teacher: its median, not MSE's mean, keeps a star's concave corners sharp.
        loss = F.mse_loss(rec, x) + (0.5 if teacher else 0.05) * F.l1_loss(rec, x)
        cosine_rate(opt, peak, step, args.decoder_steps, warmup=100)
        step = descend(opt, loss, log, step)
        if checkpoint_and_check_time(path, 'decoder', step, args.decoder_steps, loss, vae, opt, out_of_time):
            return False
    return True


@torch.no_grad()
def teacher_posterior(args, images):
    """--vae-teacher's posterior mean and std for every training image (cached in --work, for that teacher only)."""
    path = os.path.join(args.work, 'teacher.pt')
    folder = os.path.join(os.path.abspath(args.vae_teacher), 'vae')
    if os.path.exists(path):
        ck = torch.load(path)
        if ck['teacher'] != folder:
            raise SystemExit(f"{path} holds the posterior of {ck['teacher']}, not of {folder}: use another --work")
        return ck['mean'], ck['std']
    from diffusers import AutoencoderKL
    teacher = AutoencoderKL.from_config(json.load(open(os.path.join(folder, 'config.json'))))
    load_fp16(teacher, os.path.join(folder, 'diffusion_pytorch_model.fp16.safetensors'))
    mean, std = posterior(teacher, images)
    save_checkpoint(path, {'teacher': folder, 'mean': mean, 'std': std})
    return mean, std


def distil_encoder(args, vae, images, teacher, out_of_time):
    """Trains this VAE's encoder to give the teacher's posterior, so that img2img and inpainting hand the UNet
    the latents it was trained on. Returns whether it finished."""
    path = os.path.join(args.work, 'vae-encoder.pt')
    ck = load_checkpoint(path)
    params = list(vae.encoder.parameters()) + list(vae.quant_conv.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0)
    step = 0
    if ck:
        vae.load_state_dict(ck['model'])
        opt.load_state_dict(ck['opt'])
        step = ck['step']
    rng = np.random.default_rng(args.seed + 6 + step)
    log = Log(os.path.join(args.work, 'loss-encoder.csv'))
    while step < args.distil_steps:
        idx = rng.integers(len(images), size=16)
        post = vae.encode(to_tensor(images[idx])).latent_dist
        loss = F.mse_loss(post.mean, teacher[0][idx]) + 0.1 * F.mse_loss(post.std, teacher[1][idx])
        cosine_rate(opt, 1e-3, step, args.distil_steps)
        step = descend(opt, loss, log, step)
        if checkpoint_and_check_time(path, 'encoder', step, args.distil_steps, loss, vae, opt, out_of_time):
            return False
    return True


@torch.no_grad()
def normalise_latents(vae, images):
    """Folds per-channel latent mean/std into quant_conv and post_quant_conv, so latents are ~N(0, 1)."""
    means = posterior(vae, images[:2048])[0]
    m = means.mean(dim=(0, 2, 3))
    s = means.std(dim=(0, 2, 3))
    c = m.numel()
    q = vae.quant_conv  # outputs [mean, logvar]
    q.weight[:c] /= s[:, None, None, None]
    q.bias[:c] = (q.bias[:c] - m) / s
    q.bias[c:] -= 2 * torch.log(s)
    p = vae.post_quant_conv  # input z = z' * s + m
    p.bias += (p.weight.sum(dim=(2, 3)) @ m)
    p.weight *= s[None, :, None, None]


@torch.no_grad()
def posterior(vae, images):
    """The encoder's posterior mean and std for each image, encoded 64 at a time."""
    vae.eval()
    posts = [vae.encode(to_tensor(images[i:i + 64])).latent_dist for i in range(0, len(images), 64)]
    return torch.cat([p.mean for p in posts]), torch.cat([p.std for p in posts])


def embed(tok1, tok2, te1, te2, captions):
    """Playground v2.5's prompt embeddings: both encoders' penultimate hidden states side by side, pooled from encoder 2."""
    ids1 = tok1(captions, padding='max_length', max_length=77, truncation=True, return_tensors='pt').input_ids
    ids2 = tok2(captions, padding='max_length', max_length=77, truncation=True, return_tensors='pt').input_ids
    o1 = te1(ids1, output_hidden_states=True)
    o2 = te2(ids2, output_hidden_states=True)
    return torch.cat([o1.hidden_states[-2], o2.hidden_states[-2]], dim=-1), o2.text_embeds


def edm_loss(unet, x0, cond, pooled, gen, sigma_mean):
    b = x0.shape[0]
    sigma = torch.exp(sigma_mean + P_STD * torch.randn(b, generator=gen))[:, None, None, None]
    noisy = x0 + sigma * torch.randn(x0.shape, generator=gen)
    c_in = 1 / torch.sqrt(sigma ** 2 + SIGMA_DATA ** 2)
    c_skip = SIGMA_DATA ** 2 / (sigma ** 2 + SIGMA_DATA ** 2)
    c_out = sigma * SIGMA_DATA / torch.sqrt(sigma ** 2 + SIGMA_DATA ** 2)
    time_ids = torch.tensor([TIME_IDS], dtype=torch.float32).repeat(b, 1)
    out = unet(noisy * c_in, 0.25 * torch.log(sigma.flatten()), encoder_hidden_states=cond,
               added_cond_kwargs={'text_embeds': pooled, 'time_ids': time_ids}).sample
    # EDM's weighting lambda(sigma) * c_out^2 = 1 makes this plain MSE on the F target.
    return F.mse_loss(out, (x0 - c_skip * noisy) / c_out)


def train_unet(args, parts, latents, scenes, out_of_time):
    unet, te1, te2, tok1, tok2 = parts
    modules = torch.nn.ModuleList([unet, te1, te2])
    ema = copy.deepcopy(modules).requires_grad_(False)
    opt = torch.optim.AdamW(modules.parameters(), lr=5e-4, weight_decay=0.01)
    path = os.path.join(args.work, 'unet.pt')
    ck = load_checkpoint(path)
    step = 0
    warm_from = 0
    if ck:
        modules.load_state_dict(ck['model'])
        ema.load_state_dict(ck['ema'])
        step = ck['step']
        if ck['opt']:
            opt.load_state_dict(ck['opt'])
        else:  # weights from --init-from: a fresh optimiser warms up again
            warm_from = step
    if args.export_only:
        return ema
    rng = np.random.default_rng(args.seed + 2 + step)
    gen = torch.Generator().manual_seed(args.seed + 3 + step)
    log = Log(os.path.join(args.work, 'loss-unet.csv'))
    x_all = latents * world_scale()
    modules.train()
    while step < args.unet_steps:
        idx = rng.integers(len(scenes), size=args.batch)
        captions = [world.caption(scenes[i], rng) for i in idx]
        cond, pooled = embed(tok1, tok2, te1, te2, captions)
        keep = torch.from_numpy(rng.random(args.batch) >= CFG_DROP).float()
        cond, pooled = cond * keep[:, None, None], pooled * keep[:, None]
        for g in opt.param_groups:
            g['lr'] = 5e-4 * min(1, (step + 1 - warm_from) / 200) * (0.2 + 0.8 * max(0.0, 1 - step / args.unet_steps))
        loss = edm_loss(unet, x_all[idx], cond, pooled, gen, args.sigma_mean)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(modules.parameters(), 1.0)
        opt.step()
        step += 1
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), modules.parameters()):
                e.lerp_(p, 1 - decay)
        if step % 10 == 0:
            log.write(step, loss.item())
        if step % 100 == 0 or step == args.unet_steps or out_of_time():
            save_checkpoint(path, {'model': modules.state_dict(), 'ema': ema.state_dict(), 'opt': opt.state_dict(), 'step': step})
            print(f'unet {step} {loss.item():.5f} {time.time():.0f}', flush=True)
            if out_of_time():
                break
    return ema


def load_fp16(module, path, prefix=''):
    """The inverse of layout.save_fp16: a shipped weights file into a float32 module."""
    from safetensors.torch import load_file
    state = load_file(path)
    if prefix and not any(k.startswith(prefix) for k in module.state_dict()):
        state = {k.removeprefix(prefix): v for k, v in state.items()}
    state = {k: v.float() for k, v in state.items()}
    missing, unexpected = module.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith('position_ids') for k in missing):
        raise SystemExit(f'{path}: does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})')


def seed_checkpoints(args, images, vae, parts, names):
    """Writes the checkpoints --init-from's weights stand for, so that training resumes from them."""
    if not args.vae_teacher:
        load_fp16(vae, os.path.join(args.init_from, 'vae', 'diffusion_pytorch_model.fp16.safetensors'))
        save_checkpoint(os.path.join(args.work, 'vae-normalised.pt'), {'model': vae.state_dict(), 'latents': posterior(vae, images)[0]})
        save_checkpoint(os.path.join(args.work, 'vae-decoder.pt'), {'model': vae.state_dict(), 'opt': None, 'step': args.decoder_steps})
    for (name, file, prefix), module in zip(names, parts):
        load_fp16(module, os.path.join(args.init_from, name, f'{file}.fp16.safetensors'), prefix)
    modules = torch.nn.ModuleList(parts)
    save_checkpoint(os.path.join(args.work, 'unet.pt'), {'model': modules.state_dict(), 'ema': modules.state_dict(), 'opt': None, 'step': args.init_step})
    print(f'checkpoints seeded from {args.init_from} at UNet step {args.init_step}', flush=True)


def world_scale():
    """VAE latents are ~N(0, 1) after normalise_latents; the UNet sees them times scaling_factor (std 0.5 = sigma_data)."""
    return layout.VAE['scaling_factor']


def main():
    args = parse()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
    os.makedirs(args.work, exist_ok=True)
    layout.write_configs(args.out)
    start = time.time()
    out_of_time = (lambda: time.time() - start > args.minutes * 60) if args.minutes else (lambda: False)
    images, scenes = (None, None) if args.export_only else data(args)
    print(f'data ready {time.time() - start:.0f}s', flush=True)

    cfg = lambda name: CLIPTextConfig(**json.load(open(os.path.join(args.out, name, 'config.json'))))
    te1 = CLIPTextModel(cfg('text_encoder')).float()
    te2 = CLIPTextModelWithProjection(cfg('text_encoder_2')).float()
    tok1 = CLIPTokenizer.from_pretrained(os.path.join(args.out, 'tokenizer'))
    tok2 = CLIPTokenizer.from_pretrained(os.path.join(args.out, 'tokenizer_2'))
    unet = UNet2DConditionModel.from_config(layout.UNET)
    names = [('unet', 'diffusion_pytorch_model', ''), ('text_encoder', 'model', 'text_model.'), ('text_encoder_2', 'model', '')]

    vae = AutoencoderKL.from_config(layout.VAE)
    if args.init_from and not os.path.exists(os.path.join(args.work, 'unet.pt')):
        seed_checkpoints(args, images, vae, [unet, te1, te2], names)
    done = os.path.join(args.work, 'vae-normalised.pt')
    # An export reads the finished checkpoints: the teacher is needed only to train.
    teacher = teacher_posterior(args, images) if args.vae_teacher and not args.export_only else None
    if os.path.exists(done):
        ck = torch.load(done)
        vae.load_state_dict(ck['model'])
        latents = ck['latents']
    elif teacher:
        if args.export_only or not distil_encoder(args, vae, images, teacher, out_of_time):
            return
        latents = teacher[0]
        save_checkpoint(done, {'model': vae.state_dict(), 'latents': latents})
    else:
        if args.export_only or not train_vae(args, vae, images, out_of_time):
            return
        normalise_latents(vae, images)
        latents = posterior(vae, images)[0]
        save_checkpoint(done, {'model': vae.state_dict(), 'latents': latents})
    if not refine_decoder(args, vae, images, out_of_time, teacher):
        return
    print(f'latents std {latents.std(dim=(0, 2, 3)).tolist()} mean {latents.mean(dim=(0, 2, 3)).tolist()}', flush=True)

    ema = train_unet(args, (unet, te1, te2, tok1, tok2), latents, scenes, out_of_time)
    for (name, file, prefix), module in zip(names, ema):
        layout.save_fp16(module, os.path.join(args.out, name, f'{file}.fp16.safetensors'), prefix)
    layout.save_fp16(vae, os.path.join(args.out, 'vae', 'diffusion_pytorch_model.fp16.safetensors'))
    layout.write_manifest(args.out)
    print(f'exported to {args.out} after {time.time() - start:.0f}s this run', flush=True)


if __name__ == '__main__':
    main()
