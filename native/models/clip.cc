#include "clip.h"

#include "../core/error.h"

namespace pg25 {

ClipTextModel::ClipTextModel(const std::string& class_name, const Config& cfg, Params& p) {
  if (class_name == "CLIPTextModel") projection_ = false;
  else if (class_name == "CLIPTextModelWithProjection") projection_ = true;
  else
    throw unsupported(cfg.path(),
                      "text encoder class \"" + class_name + "\" is not supported (CLIPTextModel or CLIPTextModelWithProjection)");
  hidden_ = cfg.integer("hidden_size", 1, 16384);
  int64_t inter = cfg.integer("intermediate_size", 1, 65536);
  heads_ = cfg.integer("num_attention_heads", 1, 256);
  int64_t nlayers = cfg.integer("num_hidden_layers", 2, 256);
  max_pos_ = cfg.integer("max_position_embeddings", 1, 4096);
  vocab_ = cfg.integer("vocab_size", 1, 1 << 20);
  eps_ = float(cfg.number_or("layer_norm_eps", 1e-5));
  if (hidden_ % heads_ != 0) cfg.bad("hidden_size", "is not divisible by num_attention_heads");
  std::string act = cfg.string_or("hidden_act", "quick_gelu");
  if (act == "quick_gelu") quick_gelu_ = true;
  else if (act == "gelu") quick_gelu_ = false;
  else cfg.refuse("hidden_act", "is \"" + act + "\"; supported: quick_gelu, gelu");
  if (cfg.has("model_type") && cfg.string("model_type") != "clip_text_model" && cfg.string("model_type") != "clip")
    cfg.refuse("model_type", "is \"" + cfg.string("model_type") + "\"; only clip_text_model is supported");

  const std::string tm = "text_model";
  tok_emb_ = p.get(tm + ".embeddings.token_embedding.weight", {vocab_, hidden_});
  pos_emb_ = p.get(tm + ".embeddings.position_embedding.weight", {max_pos_, hidden_});
  for (int64_t i = 0; i < nlayers; i++) {
    std::string l = join(tm + ".encoder.layers", i);
    Layer L;
    L.q_w = p.linear_weight(l + ".self_attn.q_proj.weight", hidden_, hidden_);
    L.q_b = p.get(l + ".self_attn.q_proj.bias", {hidden_});
    L.k_w = p.linear_weight(l + ".self_attn.k_proj.weight", hidden_, hidden_);
    L.k_b = p.get(l + ".self_attn.k_proj.bias", {hidden_});
    L.v_w = p.linear_weight(l + ".self_attn.v_proj.weight", hidden_, hidden_);
    L.v_b = p.get(l + ".self_attn.v_proj.bias", {hidden_});
    L.o_w = p.linear_weight(l + ".self_attn.out_proj.weight", hidden_, hidden_);
    L.o_b = p.get(l + ".self_attn.out_proj.bias", {hidden_});
    L.ln1_w = p.get(l + ".layer_norm1.weight", {hidden_});
    L.ln1_b = p.get(l + ".layer_norm1.bias", {hidden_});
    L.fc1_w = p.linear_weight(l + ".mlp.fc1.weight", inter, hidden_);
    L.fc1_b = p.get(l + ".mlp.fc1.bias", {inter});
    L.fc2_w = p.linear_weight(l + ".mlp.fc2.weight", hidden_, inter);
    L.fc2_b = p.get(l + ".mlp.fc2.bias", {hidden_});
    L.ln2_w = p.get(l + ".layer_norm2.weight", {hidden_});
    L.ln2_b = p.get(l + ".layer_norm2.bias", {hidden_});
    layers_.push_back(std::move(L));
  }
  final_ln_w_ = p.get(tm + ".final_layer_norm.weight", {hidden_});
  final_ln_b_ = p.get(tm + ".final_layer_norm.bias", {hidden_});
  if (projection_) {
    int64_t proj = cfg.integer("projection_dim", 1, 16384);
    proj_w_ = p.linear_weight("text_projection.weight", proj, hidden_);
  }
}

ClipTextModel::Output ClipTextModel::forward(Backend& be, const std::vector<int32_t>& ids, int64_t batch, const CancelFlag* cancel) const {
  int64_t L = int64_t(ids.size()) / batch;
  if (L > max_pos_)
    throw Error(Code::InvalidArgument,
                "sequence of " + std::to_string(L) + " tokens exceeds max_position_embeddings " + std::to_string(max_pos_));
  Tensor x = be.embedding(ids, batch, tok_emb_);
  std::vector<int32_t> pos;
  for (int64_t b = 0; b < batch; b++)
    for (int64_t i = 0; i < L; i++) pos.push_back(int32_t(i));
  x = be.add(x, be.embedding(pos, batch, pos_emb_));

  Output out;
  // The penultimate state is all SDXL takes from a plain CLIPTextModel, so its last layer is skipped.
  size_t run = projection_ ? layers_.size() : layers_.size() - 1;
  for (size_t i = 0; i < run; i++) {
    check_cancel(cancel);
    if (i == layers_.size() - 1) out.penultimate = x;
    const Layer& l = layers_[i];
    Tensor h = be.layer_norm(x, l.ln1_w, l.ln1_b, eps_);
    Tensor q = be.linear(h, l.q_w, &l.q_b), k = be.linear(h, l.k_w, &l.k_b), v = be.linear(h, l.v_w, &l.v_b);
    x = be.linear(be.attention(q, k, v, int(heads_), true), l.o_w, &l.o_b, &x);
    h = be.layer_norm(x, l.ln2_w, l.ln2_b, eps_);
    h = be.linear(h, l.fc1_w, &l.fc1_b);
    h = quick_gelu_ ? be.quick_gelu(h) : be.gelu(h);
    x = be.linear(h, l.fc2_w, &l.fc2_b, &x);
  }
  if (!projection_) {
    out.penultimate = x;
    return out;
  }
  Tensor last = be.layer_norm(x, final_ln_w_, final_ln_b_, eps_);
  // transformers pools at the highest token id of each row (the end-of-text token, its first occurrence).
  std::vector<int64_t> rows;
  for (int64_t b = 0; b < batch; b++) {
    int64_t best = 0;
    for (int64_t i = 1; i < L; i++)
      if (ids[size_t(b * L + i)] > ids[size_t(b * L + best)]) best = i;
    rows.push_back(best);
  }
  out.pooled = be.linear(be.gather_rows(last, rows), proj_w_, nullptr);
  return out;
}

}  // namespace pg25
