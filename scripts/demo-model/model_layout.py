"""The demo model's folder in Playground v2.5's diffusers layout: configs, tokenizers, fp16 weights."""
import hashlib
import json
import os

from safetensors.torch import save_file

# Words the tokenizers merge into single tokens; anything else falls back to byte tokens. The first
# line is the shape world; the rest keeps common prompt words whole.
WORDS = ('a an the and on in of at with small large big circle square triangle star red orange yellow green blue purple '
         'white black background top bottom left right corner center middle '
         'cat dog fox bird horse robot astronaut spacesuit portrait photo painting landscape city street night day sunset '
         'sky cloud mountain river lake sea ocean beach forest tree flower garden house castle car ship boat space planet '
         'moon stars neon light pink gold silver colorful dark bright art style').split()


def bytes_to_unicode():
    """CLIP's byte-to-character table: printable bytes map to themselves, the rest to code points from 256."""
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def vocabulary():
    """A CLIP-style BPE vocabulary: every byte alone and word-final, then merges that make each word one token.

    Each merge joins the first two symbols left after applying the merges so far, so BPE with these
    ranks rebuilds every word. The end-of-text token has the highest id, as in CLIP, where the pooled
    output is read at the highest id.
    """
    chars = bytes_to_unicode()
    tokens = chars + [c + '</w>' for c in chars]
    known = set(tokens)
    ranks, merges = {}, []
    for word in WORDS:
        symbols = [chars[b] for b in word.encode()]
        symbols[-1] += '</w>'
        while True:
            while True:
                pairs = [(ranks.get(symbols[i] + ' ' + symbols[i + 1]), i) for i in range(len(symbols) - 1)]
                pairs = [p for p in pairs if p[0] is not None]
                if not pairs:
                    break
                _, i = min(pairs)
                symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
            if len(symbols) == 1:
                break
            merge = f'{symbols[0]} {symbols[1]}'
            ranks[merge] = len(merges)
            merges.append(merge)
            if symbols[0] + symbols[1] not in known:
                tokens.append(symbols[0] + symbols[1])
                known.add(tokens[-1])
    tokens += ['<|startoftext|>', '<|endoftext|>']
    return {t: i for i, t in enumerate(tokens)}, merges


def clip_config(act, arch, vocab_size):
    return {'architectures': [arch], 'model_type': 'clip_text_model', 'hidden_size': 32, 'intermediate_size': 64,
            'num_attention_heads': 4, 'num_hidden_layers': 3, 'projection_dim': 32, 'vocab_size': vocab_size,
            'max_position_embeddings': 77, 'layer_norm_eps': 1e-5, 'hidden_act': act, 'bos_token_id': 0, 'eos_token_id': 2,
            'pad_token_id': 1, 'attention_dropout': 0.0, 'dropout': 0.0, 'torch_dtype': 'float16'}


UNET = {
    '_class_name': 'UNet2DConditionModel', 'act_fn': 'silu', 'addition_embed_type': 'text_time', 'addition_time_embed_dim': 8,
    'attention_head_dim': [2, 4, 4], 'block_out_channels': [32, 64, 64], 'center_input_sample': False, 'cross_attention_dim': 64,
    'down_block_types': ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'], 'flip_sin_to_cos': True, 'freq_shift': 0,
    'in_channels': 4, 'layers_per_block': 2, 'mid_block_type': 'UNetMidBlock2DCrossAttn', 'norm_eps': 1e-5, 'norm_num_groups': 8,
    'out_channels': 4, 'projection_class_embeddings_input_dim': 80, 'sample_size': 16, 'transformer_layers_per_block': [1, 1, 2],
    'up_block_types': ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'], 'use_linear_projection': True,
}
# latents_mean/std are 0/1 because training folds the latent statistics into quant_conv and
# post_quant_conv: encoding (scaling_factor only) and decoding (mean/std too) then agree.
VAE = {
    '_class_name': 'AutoencoderKL', 'act_fn': 'silu', 'block_out_channels': [32, 32, 64, 64],
    'down_block_types': ['DownEncoderBlock2D'] * 4, 'up_block_types': ['UpDecoderBlock2D'] * 4, 'force_upcast': False,
    'in_channels': 3, 'out_channels': 3, 'latent_channels': 4, 'layers_per_block': 1, 'norm_num_groups': 4, 'sample_size': 128,
    'scaling_factor': 0.5, 'latents_mean': [0.0, 0.0, 0.0, 0.0], 'latents_std': [1.0, 1.0, 1.0, 1.0],
}
# The scheduler Playground v2.5 ships: EDM DPM++ 2M with epsilon (EDM's F) prediction, sigma_data 0.5.
SCHEDULER = {
    '_class_name': 'EDMDPMSolverMultistepScheduler', 'algorithm_type': 'dpmsolver++', 'dynamic_thresholding_ratio': 0.995,
    'euler_at_final': False, 'final_sigmas_type': 'zero', 'lower_order_final': True, 'num_train_timesteps': 1000,
    'prediction_type': 'epsilon', 'rho': 7.0, 'sample_max_value': 1.0, 'sigma_data': 0.5, 'sigma_max': 80.0, 'sigma_min': 0.002,
    'solver_order': 2, 'solver_type': 'midpoint', 'thresholding': False,
}
MODEL_INDEX = {
    '_class_name': 'StableDiffusionXLPipeline', '_pg25_demo': 'trained demo model shipped with @pg25/native',
    'force_zeros_for_empty_prompt': True, 'scheduler': ['diffusers', 'EDMDPMSolverMultistepScheduler'],
    'text_encoder': ['transformers', 'CLIPTextModel'], 'text_encoder_2': ['transformers', 'CLIPTextModelWithProjection'],
    'tokenizer': ['transformers', 'CLIPTokenizer'], 'tokenizer_2': ['transformers', 'CLIPTokenizer'],
    'unet': ['diffusers', 'UNet2DConditionModel'], 'vae': ['diffusers', 'AutoencoderKL'],
}


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(value, f, indent=2)
        f.write('\n')


def write_tokenizers(out):
    """Both tokenizer folders; tokenizer_2 pads with '!' as Playground v2.5's second tokenizer does."""
    vocab, merges = vocabulary()
    for name, pad in [('tokenizer', '<|endoftext|>'), ('tokenizer_2', '!')]:
        write_json(os.path.join(out, name, 'vocab.json'), vocab)
        with open(os.path.join(out, name, 'merges.txt'), 'w') as f:
            f.write('\n'.join(['#version: 0.2', *merges]) + '\n')
        write_json(os.path.join(out, name, 'tokenizer_config.json'), {
            'bos_token': '<|startoftext|>', 'eos_token': '<|endoftext|>', 'unk_token': '<|endoftext|>', 'pad_token': pad,
            'model_max_length': 77, 'do_lower_case': True, 'tokenizer_class': 'CLIPTokenizer'})
    return len(vocab)


def write_configs(out):
    vocab_size = write_tokenizers(out)
    write_json(os.path.join(out, 'model_index.json'), MODEL_INDEX)
    write_json(os.path.join(out, 'scheduler', 'scheduler_config.json'), SCHEDULER)
    write_json(os.path.join(out, 'text_encoder', 'config.json'), clip_config('quick_gelu', 'CLIPTextModel', vocab_size))
    write_json(os.path.join(out, 'text_encoder_2', 'config.json'), clip_config('gelu', 'CLIPTextModelWithProjection', vocab_size))
    write_json(os.path.join(out, 'unet', 'config.json'), UNET)
    write_json(os.path.join(out, 'vae', 'config.json'), VAE)


def save_fp16(module, path, prefix=''):
    """A module's weights as an fp16 safetensors file (Playground v2.5's *.fp16.safetensors variant).

    transformers 5 keeps CLIPTextModel's weights without the `text_model.` prefix that the published
    checkpoints have; `prefix` puts it back.
    """
    state = {(k if k.startswith(prefix) else prefix + k): v.detach().half().contiguous()
             for k, v in module.state_dict().items() if not k.endswith('position_ids')}
    save_file(state, path)


def write_manifest(out):
    """pg25-demo-manifest.json: the SHA-256 of every model file, which the package checks before use."""
    hashes = {}
    for root, _, files in os.walk(out):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), out).replace(os.sep, '/')
            if rel not in ('pg25-demo-manifest.json', 'README.md'):
                with open(os.path.join(root, name), 'rb') as f:
                    hashes[rel] = hashlib.sha256(f.read()).hexdigest()
    write_json(os.path.join(out, 'pg25-demo-manifest.json'), dict(sorted(hashes.items())))
