"""Reference embeddings for test/prompt-styles.test.ts, made by the references' own code.

AUTOMATIC1111's parser, chunker and emphasis (modules/prompt_parser.py, sd_hijack_clip.py,
sd_hijack_open_clip.py, sd_emphasis.py) and ComfyUI's parser, tokenizer and weighting
(comfy/sd1_clip.py, sdxl_clip.py) run unchanged over tiny-pg25's text encoders (transformers,
float32 on the CPU). Only what those modules import from the rest of their apps is stubbed here.

    . /tmp/peers/venv/bin/activate   # torch, transformers, lark, open_clip_torch (tokenizer only)
    bash scripts/prompt-fixtures/fetch_refs.sh /tmp/prompt-refs
    python scripts/prompt-fixtures/make_fixtures.py --refs /tmp/prompt-refs \
        --model ../shared/reference/tiny-pg25 --out test/fixtures/prompt-styles.json

The reference files must be those of references.json (their sha256, over LF line ends, is recorded).
With --diffusers (a diffusers v0.36.0 source tree's src/), a whole pipeline run is added: diffusers'
StableDiffusionXLPipeline fed A1111's conditioning of a weighted long prompt (prompt_embeds=...).
"""
import argparse
import base64
import hashlib
import importlib.util
import json
import os
import sys
import types

import numpy as np
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
# Embedding channels kept in the fixture (every 8th of CLIP-L's and CLIP-G's, tiny-pg25: 32 + 32).
STRIDE = 8


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


def sha256_lf(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read().replace(b"\r\n", b"\n")).hexdigest()


def module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def package(name, path):
    m = module(name)
    m.__path__ = [path]
    return m


def load_a1111(refs):
    """A1111's modules, with the webui pieces they import stubbed: shared.opts (defaults), devices, sd_hijack."""
    package("modules", os.path.join(refs, "a1111", "modules"))
    opts = types.SimpleNamespace(emphasis="Original", comma_padding_backtrack=20, use_old_emphasis_implementation=False,
                                 CLIP_stop_at_last_layers=1, sdxl_clip_l_skip=False, textual_inversion_add_hashes_to_infotext=False)
    module("modules.shared", opts=opts)
    module("modules.devices", device=torch.device("cpu"), torch_npu_set_device=lambda: None)
    module("modules.sd_hijack", StableDiffusionModelHijack=object)
    # open_clip's tokenizer module alone (its package __init__ pulls in the models, timm, torchvision).
    spec = importlib.util.find_spec("open_clip")
    package("open_clip", list(spec.submodule_search_locations)[0])
    import modules.sd_hijack_clip as hijack_clip
    import modules.sd_hijack_open_clip as hijack_open_clip
    return hijack_clip, hijack_open_clip


def load_comfy(refs):
    """ComfyUI's sd1_clip/sdxl_clip, with comfy.ops, model_management, clip_model and pkg_resources stubbed."""
    package("comfy", os.path.join(refs, "comfy", "comfy"))
    module("comfy.ops", manual_cast=None)
    module("comfy.model_management", intermediate_device=lambda: torch.device("cpu"))
    module("comfy.clip_model", CLIPTextModel=None)
    module("pkg_resources", resource_filename=lambda *a: None)
    import comfy.sd1_clip as sd1_clip
    import comfy.sdxl_clip as sdxl_clip
    return sd1_clip, sdxl_clip


class Hijack:
    """What A1111's embedders read from sd_hijack: no textual inversions."""
    def __init__(self):
        self.fixes = None
        self.extra_generation_params = {}
        self.embedding_db = types.SimpleNamespace(find_embedding_at_position=lambda tokens, position: (None, None))


def penultimate(model, tokens):
    out = model(input_ids=torch.as_tensor(tokens), output_hidden_states=True)
    return out, out.hidden_states[-2]


class ClipL:
    """sgm's FrozenCLIPEmbedder as A1111 wraps it for SDXL: layer 'hidden' at the penultimate layer."""
    def __init__(self, model_dir):
        self.tokenizer = transformers.CLIPTokenizer.from_pretrained(os.path.join(model_dir, "tokenizer"))
        self.transformer = transformers.CLIPTextModel.from_pretrained(os.path.join(model_dir, "text_encoder"), variant="fp16",
                                                                      torch_dtype=torch.float32).eval()
        self.layer = "hidden"
        self.layer_idx = -2  # SDXL's 12-layer CLIP-L uses hidden_states[11]: the penultimate layer, here -2
        self.fed = []
        self.transformer.register_forward_pre_hook(lambda m, args, kw: self.fed.append(kw["input_ids"].tolist()), with_kwargs=True)


class ClipG:
    """sgm's FrozenOpenCLIPEmbedder2 as A1111 calls it: the penultimate layer and the projected pooled output."""
    def __init__(self, model_dir):
        self.model = transformers.CLIPTextModelWithProjection.from_pretrained(os.path.join(model_dir, "text_encoder_2"), variant="fp16",
                                                                              torch_dtype=torch.float32).eval()
        self.layer = "penultimate"
        self.return_pooled = True
        self.fed = []

    def encode_with_transformer(self, tokens):
        self.fed.append(torch.as_tensor(tokens).tolist())
        out, z = penultimate(self.model, tokens)
        return {"penultimate": z, "pooled": out.text_embeds}


def comfy_encoder(sd1_clip, model, special_tokens, projected):
    """ComfyUI's ClipTokenWeightEncoder (its weighting code) over a transformers model: its encode() gives the
    penultimate hidden states (layer_norm_hidden_state False, as SDXL's CLIP-L and CLIP-G are set up) and the pooled output."""
    class Encoder(sd1_clip.ClipTokenWeightEncoder):
        def __init__(self):
            self.special_tokens = special_tokens

        def encode(self, tokens):
            with torch.no_grad():
                out, z = penultimate(model, tokens)
            return z.float(), (out.text_embeds.float() if projected else None)
    return Encoder()


def sub(z):
    """[T, 64] -> the fixture's channels [T, 64 / STRIDE]."""
    return z[..., ::STRIDE]


def a1111_case(l, g, text):
    l.wrapped.fed.clear()
    g.wrapped.fed.clear()
    with torch.no_grad():
        zl = l([text])
        zg, pooled = g([text])
    return {"ids_l": [t[0] for t in l.wrapped.fed], "ids_g": [t[0] for t in g.wrapped.fed], "tokens": zl.shape[1],
            "embeds": b64(sub(torch.cat([zl, zg], dim=2)[0]).numpy()), "pooled": b64(pooled[0].numpy())}


def comfy_case(tok_l, tok_g, enc_l, enc_g, text, text_g=None):
    pairs_l = tok_l.tokenize_with_weights(text)
    pairs_g = tok_g.tokenize_with_weights(text if text_g is None else text_g)
    # CLIPTextEncodeSDXL (nodes.py): the shorter of text_l and text_g gets the empty prompt's chunks.
    empty_l, empty_g = tok_l.tokenize_with_weights(""), tok_g.tokenize_with_weights("")
    while len(pairs_l) < len(pairs_g):
        pairs_l += empty_l
    while len(pairs_g) < len(pairs_l):
        pairs_g += empty_g
    zl, _ = enc_l.encode_token_weights(pairs_l)
    zg, pooled = enc_g.encode_token_weights(pairs_g)
    z = torch.cat([zl, zg], dim=-1)
    return {"ids_l": [[t for t, _ in c] for c in pairs_l], "ids_g": [[t for t, _ in c] for c in pairs_g],
            "weights_l": [[w for _, w in c] for c in pairs_l], "tokens": z.shape[1],
            "embeds": b64(sub(z[0]).numpy()), "pooled": b64(pooled[0].numpy())}


PIPELINE = {"prompt": "a (red:1.3) castle on a [misty] hill, " + ", ".join(["tall towers"] * 30) + ", (golden light:0.8)",
            "negative": "blurry", "steps": 4, "guidance": 3.0, "width": 64, "height": 64, "seed": 11}


def pipeline_case(src, model_dir, a_l, a_g):
    """diffusers' pipeline on A1111's conditioning; the shorter half padded with the empty prompt (A1111's pad_cond)."""
    sys.path.insert(0, src)
    import diffusers
    from diffusers import EDMDPMSolverMultistepScheduler, StableDiffusionXLPipeline

    def cond(text):
        zl = a_l([text])
        zg, pooled = a_g([text])
        return torch.cat([zl, zg], dim=2), pooled

    c = PIPELINE
    pos, pos_pooled = cond(c["prompt"])
    neg, neg_pooled = cond(c["negative"])
    empty, _ = cond("")
    while neg.shape[1] < pos.shape[1]:
        neg = torch.cat([neg, empty], dim=1)
    pipe = StableDiffusionXLPipeline.from_pretrained(model_dir, variant="fp16", torch_dtype=torch.float32)
    pipe.scheduler = EDMDPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    run = dict(prompt_embeds=pos, pooled_prompt_embeds=pos_pooled, negative_prompt_embeds=neg, negative_pooled_prompt_embeds=neg_pooled,
               num_inference_steps=c["steps"], guidance_scale=c["guidance"], width=c["width"], height=c["height"])
    latents = pipe(**run, generator=torch.Generator("cpu").manual_seed(c["seed"]), output_type="latent").images
    image = pipe(**run, generator=torch.Generator("cpu").manual_seed(c["seed"]), output_type="np").images[0]
    rgb = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    return {**c, "diffusers": diffusers.__version__, "tokens": pos.shape[1], "latents": b64(latents[0].numpy()),
            "image": base64.b64encode(rgb.tobytes()).decode()}


def cases():
    cat = lambda n: " ".join(["cat"] * n)  # one token a word for both tokenizers
    return [
        ("weights", "a (red:1.3) cat, [blurry] (dog) ((tree))"),
        ("nesting", "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."),
        ("nesting-comfy", "((a (b:1.5)) c:0.8) d (e (f))"),
        ("escapes", "a \\(literal\\) \\[x\\] word \\\\ back"),
        ("unbalanced", "(unclosed [also) b ) c ( d"),
        ("weight-forms", "(x:1e-1) (y:abc) (z:) (w:1.2.3) (v: 0.5 )"),
        ("empty", ""),
        ("whitespace", "   \n\t  "),
        ("tokens-75", cat(75)),
        ("tokens-76", cat(76)),
        ("tokens-77", cat(77)),
        ("tokens-78", cat(78)),
        ("tokens-300", " ".join(["a red cat,"] * 75)),
        ("break-at-edge", cat(75) + " BREAK dog BREAK"),
        ("break", "BREAK a (cat:1.2) BREAK BREAK dog"),
        ("long-word", "a " + "supercalifragilistic" * 6 + " b"),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--refs", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--diffusers", help="diffusers' src/ folder (v0.36.0) for the pipeline case")
    args = ap.parse_args()
    refs = json.load(open(os.path.join(HERE, "references.json")))
    for name, ref in refs.items():
        for f in ref["files"]:
            f["sha256"] = sha256_lf(os.path.join(args.refs, name, f["path"]))
    torch.set_grad_enabled(False)
    hijack_clip, hijack_open_clip = load_a1111(args.refs)
    sd1_clip, sdxl_clip = load_comfy(args.refs)

    hijack = Hijack()
    a_l = hijack_clip.FrozenCLIPEmbedderForSDXLWithCustomWords(ClipL(args.model), hijack)
    a_g = hijack_open_clip.FrozenOpenCLIPEmbedder2WithCustomWords(ClipG(args.model), hijack)
    tok_l = sd1_clip.SDTokenizer(tokenizer_path=os.path.join(args.model, "tokenizer"))
    tok_g = sdxl_clip.SDXLClipGTokenizer(tokenizer_path=os.path.join(args.model, "tokenizer_2"))
    model_l = a_l.wrapped.transformer
    model_g = a_g.wrapped.model
    enc_l = comfy_encoder(sd1_clip, model_l, {"start": 49406, "end": 49407, "pad": 49407}, False)
    enc_g = comfy_encoder(sd1_clip, model_g, {"start": 49406, "end": 49407, "pad": 0}, True)

    out = {"references": refs, "model": "tiny-pg25", "stride": STRIDE, "torch": torch.__version__,
           "transformers": transformers.__version__, "a1111": [], "comfy": []}
    for name, text in cases():
        try:
            out["a1111"].append({"name": name, "prompt": text, **a1111_case(a_l, a_g, text)})
        except ValueError as e:  # A1111 fails on a weight Python cannot read, e.g. (w:1.2.3)
            out["a1111"].append({"name": name, "prompt": text, "error": str(e)})
        out["comfy"].append({"name": name, "prompt": text, **comfy_case(tok_l, tok_g, enc_l, enc_g, text)})
    out["comfy"].append({"name": "prompt2-differs", "prompt": "a (cat:1.2)", "prompt2": " ".join(["dog"] * 80),
                         **comfy_case(tok_l, tok_g, enc_l, enc_g, "a (cat:1.2)", " ".join(["dog"] * 80))})
    # Long one-word runs, where the order of BPE merges matters most: Hugging Face's fast (Rust) tokenizer's ids.
    fast = transformers.CLIPTokenizerFast.from_pretrained(os.path.join(args.model, "tokenizer"))
    letters = "".join("etaoinshrdlucmfwypvbgkjqxz"[(i * i * 7 + i * 3) % 26] for i in range(600))
    words = ["x" * 300, "ab" * 200, letters, "supercalifragilistic" * 12, "\U0001F916" * 60, "\u6771\u4eac" * 80, "aaaaaaaaab" * 30,
             "lllllllllllllllooooooooooooooooonnnnnnnnnnnnnnnggggggggggg", "e\u0301" * 40 + "z"]
    out["long_words"] = [{"text": w, "ids": fast(w, add_special_tokens=False)["input_ids"]} for w in words]
    if args.diffusers:
        out["pipeline"] = pipeline_case(args.diffusers, args.model, a_l, a_g)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
