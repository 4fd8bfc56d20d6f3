// CLIPTextModel and CLIPTextModelWithProjection (transformers), as SDXL uses them: the penultimate
// hidden states, and for the projection model the pooled, projected text embedding.
#pragma once
#include <vector>

#include "../core/config.h"
#include "cancel.h"
#include "params.h"

namespace pg25 {

class ClipTextModel {
 public:
  // `class_name` is the model_index.json class: CLIPTextModel or CLIPTextModelWithProjection.
  ClipTextModel(const std::string& class_name, const Config& cfg, Params& p);

  struct Output {
    Tensor penultimate;  // hidden_states[-2], [B, L, hidden]
    Tensor pooled;       // text_embeds [B, projection_dim] (projection model only)
  };
  // `cancel`, when set, stops the pass between layers with ABORT_ERR.
  Output forward(Backend& be, const std::vector<int32_t>& ids, int64_t batch, const CancelFlag* cancel = nullptr) const;
  int64_t hidden_size() const { return hidden_; }
  int64_t max_positions() const { return max_pos_; }

 private:
  struct Layer {
    Tensor ln1_w, ln1_b, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
  };
  bool projection_;
  int64_t hidden_, heads_, max_pos_, vocab_;
  float eps_;
  bool quick_gelu_;
  Tensor tok_emb_, pos_emb_, final_ln_w_, final_ln_b_, proj_w_;
  std::vector<Layer> layers_;
};

}  // namespace pg25
