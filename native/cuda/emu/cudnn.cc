// The emulated cuDNN 9: the backend (graph) API subset our backend calls, written from cudnn_graph.h's
// documentation of each descriptor. Attributes are checked as the library defines them (settable on
// that descriptor, the documented attribute type and element count, nothing set after finalization),
// finalization validates what the real one does (required attributes, dimensions and strides that make
// a convolution, broadcasting, alignment a multiple of the element size, a graph whose virtual tensors
// connect), and execution runs the finalized graph on the CPU: the convolution in float32 over fp16/
// bf16 storage, then the pointwise ops in dependency order, in stream order on the emulated runtime.
// Every operand must lie inside a device allocation with the alignment its tensor declared; misuse
// (any BAD_PARAM) is recorded in the emulation report. NOT_SUPPORTED answers are not misuse: our
// backend is meant to try the next engine or graph on them. The engines and the execution itself are
// emu/cudnn_exec.cc.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "cudnn_graph.h"
#include "libraries.h"
#include "runtime.h"
#include "../../platform/env.h"

namespace pg25::emu {
namespace {

using namespace dnn;
using Status = int32_t;
constexpr Status kOk = 0, kNotInitialized = 1001, kBadParam = 2000, kNullPointer = 2002, kMisaligned = 2003, kNotFinalized = 2004,
                 kShapeMismatch = 2008, kAttributeType = 2010, kDescriptorType = 2012, kNotSupported = 3000, kGraphPattern = 3001,
                 kExecutionFailedCudart = 5003;

// PG25_EMU_CUDNN=uncapturable-plans: building an execution plan makes a call a stream capture cannot
// take (as engines compiled at run time may: module loads, allocations); =uncapturable: running a plan
// does too. Either fails the call and invalidates a capture the calling thread has in progress.
bool uncapturable(bool running) {
  const char* env = platform::env("PG25_EMU_CUDNN");
  std::string v = env ? env : "";
  return (v == "uncapturable" || (!running && v == "uncapturable-plans")) && refuse_during_capture();
}
// cudnnBackendDescriptorType_t
enum : int32_t {
  kPointwise = 0,
  kConvolution = 1,
  kEngineCfg = 3,
  kEngineHeur = 4,
  kPlan = 5,
  kConvFwd = 10,
  kPointwiseOp = 13,
  kGraph = 15,
  kVariantPack = 16,
  kTensor = 17
};
// cudnnBackendAttributeType_t
enum : int32_t {
  kTHandle = 0,
  kTDataType = 1,
  kTBoolean = 2,
  kTInt64 = 3,
  kTFloat = 4,
  kTDouble = 5,
  kTVoidPtr = 6,
  kTConvMode = 7,
  kTHeurMode = 8,
  kTPointwiseMode = 14,
  kTDescriptor = 15
};
constexpr size_t kMaxDims = 8;  // CUDNN_DIM_MAX

struct Handle {
  cudaStream_t stream = nullptr;
};

struct Desc {
  int32_t type;
  bool finalized = false;
  // tensor
  int64_t uid = -1, align = -1;
  int32_t dtype = -1;
  std::vector<int64_t> dims, strides;
  bool is_virtual = false;
  // convolution
  int32_t comp = -1, conv_mode = -1;
  int64_t spatial = -1;
  std::vector<int64_t> dilations, filter_strides, pre, post;
  // pointwise
  int32_t pw_mode = -1, prec = -1;
  // operations: conv forward (x, w, y, conv) and pointwise (pw, x, b, y)
  Desc *x = nullptr, *w = nullptr, *y = nullptr, *conv = nullptr, *pw = nullptr, *b = nullptr;
  bool alpha_set = false, beta_set = false;
  double alpha = 1, beta = 0;
  // operation graph, engine heuristics, engine config, plan
  Handle* handle = nullptr;
  std::vector<Desc*> ops;
  Desc* graph_desc = nullptr;
  int32_t heur_mode = -1;
  std::shared_ptr<const Graph> graph;
  std::vector<int64_t> engines;  // heuristics results
  int64_t engine = -1;
  Desc* cfg = nullptr;
  int64_t workspace = 0;
  // variant pack
  std::vector<int64_t> uids;
  std::vector<const void*> ptrs;
  void* ws = nullptr;
  bool ws_set = false, uids_set = false, ptrs_set = false;
};

struct Registry {
  std::mutex mu;
  std::set<Desc*> descs;
  std::set<Handle*> handles;
};
Registry& R() {
  static Registry* r = new Registry;
  return *r;
}
bool live(Desc* d) {
  std::lock_guard<std::mutex> g(R().mu);
  return R().descs.count(d) != 0;
}
bool live(Handle* h) {
  std::lock_guard<std::mutex> g(R().mu);
  return R().handles.count(h) != 0;
}

Status bad(Status s, const std::string& why) {
  note_misuse("cuDNN: " + why);
  return s;
}

uint32_t alignment_of(const void* p) {
  auto v = reinterpret_cast<uintptr_t>(p) | 256;
  return uint32_t(v & (~v + 1));
}

// Handles and descriptors are checked against the live ones before any use.
template <class T>
void track(std::set<T*>& live_set, T* p) {
  std::lock_guard<std::mutex> g(R().mu);
  live_set.insert(p);
}
template <class T>
Status untrack(std::set<T*>& live_set, T* p, const char* what) {
  {
    std::lock_guard<std::mutex> g(R().mu);
    if (!live_set.erase(p)) return bad(kBadParam, std::string(what) + ": not a live handle or descriptor");
  }
  delete p;
  return kOk;
}

// ---- cudnnBackendSetAttribute: the attributes of each descriptor we emulate, with their types and counts.

struct Setter {
  Desc* d;
  const char* name;
  int32_t type;
  int64_t count;
  const void* v;

  Status want(int32_t t, int64_t lo, int64_t hi) const {
    if (type != t)
      return bad(kAttributeType, std::string(name) + " takes attribute type " + std::to_string(t) + ", got " + std::to_string(type));
    if (count < lo || count > hi)
      return bad(kBadParam, std::string(name) + " takes " + std::to_string(lo) + (lo == hi ? "" : ".." + std::to_string(hi)) +
                                " elements, got " + std::to_string(count));
    if (!v && count > 0) return bad(kNullPointer, std::string(name) + ": null arrayOfElements");
    return kOk;
  }
  template <class T>
  Status one(int32_t t, T& field) const {
    if (Status s = want(t, 1, 1)) return s;
    std::memcpy(&field, v, sizeof(T));
    return kOk;
  }
  Status ints(std::vector<int64_t>& field, int64_t lo, int64_t hi) const {
    if (Status s = want(kTInt64, lo, hi)) return s;
    const int64_t* p = static_cast<const int64_t*>(v);
    field.assign(p, p + count);
    return kOk;
  }
  // One descriptor of the given type, live.
  Status desc(Desc*& field, int32_t want_type) const {
    if (Status s = want(kTDescriptor, 1, 1)) return s;
    Desc* o = *static_cast<Desc* const*>(v);
    if (!live(o)) return bad(kBadParam, std::string(name) + ": not a live backend descriptor");
    if (o->type != want_type)
      return bad(kDescriptorType,
                 std::string(name) + " takes a descriptor of type " + std::to_string(want_type) + ", got " + std::to_string(o->type));
    field = o;
    return kOk;
  }
  // alpha/beta: CUDNN_TYPE_FLOAT or CUDNN_TYPE_DOUBLE.
  Status scale(double& field, bool& was_set) const {
    if (type != kTFloat && type != kTDouble) return bad(kAttributeType, std::string(name) + " takes CUDNN_TYPE_FLOAT or CUDNN_TYPE_DOUBLE");
    if (count < 1 || !v) return bad(kBadParam, std::string(name) + " takes 1+ elements");
    field = type == kTFloat ? double(*static_cast<const float*>(v)) : *static_cast<const double*>(v);
    was_set = true;
    return kOk;
  }
  Status unknown() const {
    return bad(kBadParam, "attribute " + std::string(name) + " is not settable on a descriptor of type " + std::to_string(d->type));
  }
};

Status set_attribute(Desc* d, int32_t attr, const Setter& s) {
  switch (d->type) {
    case kTensor:
      switch (attr) {
        case 900: return s.one(kTInt64, d->align);
        case 901: return s.one(kTDataType, d->dtype);
        case 902: return s.ints(d->dims, 1, kMaxDims);
        case 903: return s.ints(d->strides, 1, kMaxDims);
        case 906: return s.one(kTInt64, d->uid);
        case 907: return s.one(kTBoolean, d->is_virtual);
      }
      break;
    case kConvolution:
      switch (attr) {
        case 100: return s.one(kTDataType, d->comp);
        case 101: return s.one(kTConvMode, d->conv_mode);
        case 102: return s.ints(d->dilations, 1, kMaxDims);
        case 103: return s.ints(d->filter_strides, 1, kMaxDims);
        case 104: return s.ints(d->post, 1, kMaxDims);
        case 105: return s.ints(d->pre, 1, kMaxDims);
        case 106: return s.one(kTInt64, d->spatial);
      }
      break;
    case kPointwise:
      switch (attr) {
        case 0: return s.one(kTPointwiseMode, d->pw_mode);
        case 1: return s.one(kTDataType, d->prec);
      }
      break;
    case kConvFwd:
      switch (attr) {
        case 700: return s.scale(d->alpha, d->alpha_set);
        case 701: return s.scale(d->beta, d->beta_set);
        case 702: return s.desc(d->conv, kConvolution);
        case 703: return s.desc(d->w, kTensor);
        case 704: return s.desc(d->x, kTensor);
        case 705: return s.desc(d->y, kTensor);
      }
      break;
    case kPointwiseOp:
      switch (attr) {
        case 750: return s.desc(d->pw, kPointwise);
        case 751: return s.desc(d->x, kTensor);
        case 752: return s.desc(d->b, kTensor);
        case 753: return s.desc(d->y, kTensor);
        case 754: return s.scale(d->alpha, d->alpha_set);
        case 755: return s.scale(d->beta, d->beta_set);
      }
      break;
    case kGraph:
      if (attr == 800) {
        if (Status st = s.one(kTHandle, d->handle)) return st;
        return live(d->handle) ? kOk : bad(kBadParam, "CUDNN_ATTR_OPERATIONGRAPH_HANDLE: not a live cuDNN handle");
      }
      if (attr == 801) {
        if (Status st = s.want(kTDescriptor, 1, 64)) return st;
        d->ops.clear();
        for (int64_t i = 0; i < s.count; i++) {
          Desc* o = static_cast<Desc* const*>(s.v)[i];
          if (!live(o)) return bad(kBadParam, "CUDNN_ATTR_OPERATIONGRAPH_OPS: element " + std::to_string(i) + " is not a live descriptor");
          if (o->type != kConvFwd && o->type != kPointwiseOp)
            return bad(kDescriptorType,
                       "CUDNN_ATTR_OPERATIONGRAPH_OPS: element " + std::to_string(i) + " is not an operation descriptor we emulate");
          d->ops.push_back(o);
        }
        return kOk;
      }
      break;
    case kEngineHeur:
      if (attr == 200) return s.one(kTHeurMode, d->heur_mode);
      if (attr == 201) return s.desc(d->graph_desc, kGraph);
      break;
    case kPlan:
      if (attr == 400) {
        if (Status st = s.one(kTHandle, d->handle)) return st;
        return live(d->handle) ? kOk : bad(kBadParam, "CUDNN_ATTR_EXECUTION_PLAN_HANDLE: not a live cuDNN handle");
      }
      if (attr == 401) return s.desc(d->cfg, kEngineCfg);
      break;
    case kVariantPack:
      if (attr == 1000) {
        d->uids_set = true;
        return s.ints(d->uids, 0, 64);
      }
      if (attr == 1001) {
        if (Status st = s.want(kTVoidPtr, 0, 64)) return st;
        const void* const* p = static_cast<const void* const*>(s.v);
        d->ptrs.assign(p, p + s.count);
        d->ptrs_set = true;
        return kOk;
      }
      if (attr == 1003) {
        d->ws_set = true;
        return s.one(kTVoidPtr, d->ws);
      }
      break;
  }
  return s.unknown();
}

// ---- cudnnBackendFinalize

Status finalize_tensor(Desc* d) {
  if (d->uid < 0 || d->dtype < 0 || d->dims.empty() || d->strides.empty() || d->align < 0)
    return bad(kBadParam, "tensor finalize: unique id, data type, dimensions, strides and byte alignment are all required");
  if (d->dims.size() != d->strides.size())
    return bad(kBadParam, "tensor " + std::to_string(d->uid) + ": " + std::to_string(d->dims.size()) + " dimensions but " +
                              std::to_string(d->strides.size()) + " strides");
  for (size_t i = 0; i < d->dims.size(); i++)
    if (d->dims[i] < 1 || d->strides[i] < 1)
      return bad(kBadParam, "tensor " + std::to_string(d->uid) + ": dimensions and strides must be positive");
  if (d->dtype != kFloat && d->dtype != kHalf && d->dtype != kBf16) return kNotSupported;  // not emulated
  if (d->align < 1 || d->align % int64_t(elem_size(d->dtype)) != 0)
    return bad(kBadParam, "tensor " + std::to_string(d->uid) + ": byte alignment " + std::to_string(d->align) +
                              " is not a multiple of the element size");
  return kOk;
}

Status finalize_conv(Desc* d) {
  if (d->comp < 0 || d->conv_mode < 0 || d->spatial < 0 || d->dilations.empty() || d->filter_strides.empty() || d->pre.empty() ||
      d->post.empty())
    return bad(kBadParam, "convolution finalize: compute type, mode, spatial dims, dilations, strides and paddings are all required");
  for (auto* v : {&d->dilations, &d->filter_strides, &d->pre, &d->post})
    if (int64_t(v->size()) != d->spatial)
      return bad(kBadParam,
                 "convolution: an array's element count differs from CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS " + std::to_string(d->spatial));
  for (size_t i = 0; i < d->pre.size(); i++)
    if (d->dilations[i] < 1 || d->filter_strides[i] < 1 || d->pre[i] < 0 || d->post[i] < 0)
      return bad(kBadParam, "convolution: dilations and strides must be positive, paddings non-negative");
  if (d->spatial != 2 || d->comp != kFloat || d->conv_mode > 1) return kNotSupported;  // emulated: 2-D, fp32 compute
  return kOk;
}

Status finalized_tensors(std::initializer_list<Desc*> ts, const char* what) {
  for (Desc* t : ts)
    if (!t || !live(t) || !t->finalized) return bad(kNotFinalized, std::string(what) + ": a tensor is missing, destroyed or not finalized");
  return kOk;
}

Status finalize_conv_fwd(Desc* d) {
  if (!d->conv || !d->alpha_set || !d->beta_set)
    return bad(kBadParam, "convolution forward finalize: X, W, Y, the convolution descriptor, alpha and beta are all required");
  if (Status s = finalized_tensors({d->x, d->w, d->y}, "convolution forward")) return s;
  if (!live(d->conv) || !d->conv->finalized) return bad(kNotFinalized, "convolution forward: the convolution descriptor is not finalized");
  const auto &x = d->x->dims, &w = d->w->dims, &y = d->y->dims;
  if (x.size() != 4 || w.size() != 4 || y.size() != 4)
    return bad(kBadParam, "convolution forward: X, W and Y must have 2 spatial dimensions plus 2");
  const Desc& c = *d->conv;
  if (w[1] != x[1] || y[0] != x[0] || y[1] != w[0])
    return bad(kShapeMismatch, "convolution forward: X [N, C, ..], W [K, C, ..] and Y [N, K, ..] disagree");
  for (int i = 0; i < 2; i++) {
    int64_t span = (w[2 + i] - 1) * c.dilations[size_t(i)] + 1, in = x[2 + i] + c.pre[size_t(i)] + c.post[size_t(i)];
    int64_t out = in < span ? 0 : (in - span) / c.filter_strides[size_t(i)] + 1;
    if (y[2 + i] != out)
      return bad(kShapeMismatch, "convolution forward: Y's spatial dimension " + std::to_string(i) + " is " + std::to_string(y[2 + i]) +
                                     ", the convolution gives " + std::to_string(out));
  }
  if (d->beta != 0) return kNotSupported;  // beta * y is not emulated: our graphs add residuals with a pointwise op
  return kOk;
}

Status finalize_pointwise_op(Desc* d) {
  if (!d->pw || !live(d->pw) || !d->pw->finalized)
    return bad(kNotFinalized, "pointwise op: the pointwise descriptor is missing or not finalized");
  if (Status s = finalized_tensors({d->x, d->b, d->y}, "pointwise op (an add takes X, B and Y)")) return s;
  const auto &x = d->x->dims, &b = d->b->dims, &y = d->y->dims;
  if (x.size() != y.size() || b.size() != y.size()) return bad(kBadParam, "pointwise op: X, B and Y differ in rank");
  for (size_t i = 0; i < y.size(); i++)
    if ((x[i] != y[i] && x[i] != 1) || (b[i] != y[i] && b[i] != 1))
      return bad(kShapeMismatch, "pointwise op: X or B does not broadcast to Y in dimension " + std::to_string(i));
  if (y.size() != 4) return kNotSupported;  // emulated: 4-D
  return kOk;
}

// Copies the graph out of its op descriptors: each tensor once by unique id, virtual tensors produced
// once and consumed, the nodes ordered so each runs after the producers of its inputs.
Status finalize_graph(Desc* d) {
  if (!d->handle || d->ops.empty()) return bad(kBadParam, "operation graph finalize: the handle and the operations are required");
  auto g = std::make_shared<Graph>();
  g->handle = d->handle;
  auto index = [&](Desc* t, int& out) -> Status {
    for (size_t i = 0; i < g->tensors.size(); i++) {
      TensorInfo& e = g->tensors[i];
      if (e.uid != t->uid) continue;
      bool same = e.type == t->dtype && e.is_virtual == t->is_virtual && std::equal(t->dims.begin(), t->dims.end(), e.dims);
      if (!same) return bad(kBadParam, "operation graph: two different tensors share unique id " + std::to_string(t->uid));
      out = int(i);
      return kOk;
    }
    TensorInfo e{t->uid, {}, {}, t->align, t->dtype, t->is_virtual};
    for (int i = 0; i < 4; i++) e.dims[i] = t->dims[size_t(i)], e.strides[i] = t->strides[size_t(i)];
    g->tensors.push_back(e);
    out = int(g->tensors.size() - 1);
    return kOk;
  };
  std::vector<Node> nodes;
  for (Desc* op : d->ops) {
    if (!live(op) || !op->finalized) return bad(kNotFinalized, "operation graph: an operation is destroyed or not finalized");
    Node n{};
    n.conv = op->type == kConvFwd;
    if (Status s = index(op->x, n.in)) return s;
    if (Status s = index(n.conv ? op->w : op->b, n.other)) return s;
    if (Status s = index(op->y, n.out)) return s;
    if (n.conv) {
      for (int i = 0; i < 2; i++)
        n.stride[i] = op->conv->filter_strides[size_t(i)], n.pre[i] = op->conv->pre[size_t(i)], n.dil[i] = op->conv->dilations[size_t(i)];
      n.alpha1 = float(op->alpha);
    } else {
      if (op->pw->pw_mode != 0) return kNotSupported;  // emulated pointwise mode: ADD
      n.alpha1 = op->alpha_set ? float(op->alpha) : 1.f;
      n.alpha2 = op->beta_set ? float(op->beta) : 1.f;
    }
    nodes.push_back(n);
  }
  std::vector<int> producers(g->tensors.size(), 0), consumers(g->tensors.size(), 0);
  for (const Node& n : nodes) producers[size_t(n.out)]++, consumers[size_t(n.in)]++, consumers[size_t(n.other)]++;
  for (size_t i = 0; i < g->tensors.size(); i++) {
    const TensorInfo& t = g->tensors[i];
    if (producers[i] > 1) return bad(kBadParam, "operation graph: tensor " + std::to_string(t.uid) + " is written by several operations");
    if (t.is_virtual && (producers[i] != 1 || consumers[i] == 0))
      return bad(kBadParam, "operation graph: virtual tensor " + std::to_string(t.uid) + " must be produced once and consumed");
  }
  // Dependency order: repeatedly take a node whose inputs are graph inputs or already computed.
  std::vector<bool> ready(g->tensors.size()), done(nodes.size());
  for (size_t i = 0; i < g->tensors.size(); i++) ready[i] = producers[i] == 0;
  while (g->nodes.size() < nodes.size()) {
    bool progress = false;
    for (size_t i = 0; i < nodes.size(); i++)
      if (!done[i] && ready[size_t(nodes[i].in)] && ready[size_t(nodes[i].other)]) {
        g->nodes.push_back(nodes[i]);
        ready[size_t(nodes[i].out)] = true;
        done[i] = progress = true;
      }
    if (!progress) return bad(kBadParam, "operation graph: its operations form a cycle");
  }
  d->graph = g;
  return kOk;
}

Status finalize(Desc* d) {
  switch (d->type) {
    case kTensor: return finalize_tensor(d);
    case kConvolution: return finalize_conv(d);
    case kPointwise:
      if (d->pw_mode < 0 || d->prec < 0) return bad(kBadParam, "pointwise finalize: mode and math precision are required");
      return kOk;
    case kConvFwd: return finalize_conv_fwd(d);
    case kPointwiseOp: return finalize_pointwise_op(d);
    case kGraph: return finalize_graph(d);
    case kEngineHeur:
      if (!d->graph_desc || d->heur_mode < 0)
        return bad(kBadParam, "engine heuristics finalize: the operation graph and the mode are required");
      if (!live(d->graph_desc) || !d->graph_desc->finalized)
        return bad(kNotFinalized, "engine heuristics: the operation graph is not finalized");
      if (d->heur_mode > 3)
        return bad(kBadParam, "engine heuristics: mode " + std::to_string(d->heur_mode) + " is not a cudnnBackendHeurMode_t");
      d->graph = d->graph_desc->graph;
      d->engines = engines_for(*d->graph, d->heur_mode);
      return kOk;
    case kPlan:
      if (!d->handle || !d->cfg) return bad(kBadParam, "execution plan finalize: the handle and the engine config are required");
      if (!live(d->cfg) || !d->cfg->finalized) return bad(kNotFinalized, "execution plan: the engine config is not finalized");
      if (d->cfg->graph->handle != d->handle) return bad(kBadParam, "execution plan: its handle is not its operation graph's");
      if (!engine_supports(*d->cfg->graph, d->cfg->engine)) return kNotSupported;
      if (uncapturable(false)) return kExecutionFailedCudart;
      d->graph = d->cfg->graph;
      d->engine = d->cfg->engine;
      d->workspace = engine_workspace(*d->graph, d->engine);
      return kOk;
    case kVariantPack:
      if (!d->uids_set || !d->ptrs_set || !d->ws_set)
        return bad(kBadParam, "variant pack finalize: unique ids, data pointers and the workspace are required");
      if (d->uids.size() != d->ptrs.size())
        return bad(kBadParam, "variant pack: " + std::to_string(d->uids.size()) + " unique ids but " + std::to_string(d->ptrs.size()) +
                                  " data pointers");
      return kOk;
  }
  return bad(kBadParam, "finalize: descriptor type " + std::to_string(d->type) + " is not emulated");
}

Status execute(Handle* h, Desc* plan, Desc* pack) {
  if (!live(h)) return bad(kBadParam, "cudnnBackendExecute: not a live cuDNN handle");
  if (!live(plan) || plan->type != kPlan || !plan->finalized) return bad(kBadParam, "cudnnBackendExecute: not a finalized execution plan");
  if (!live(pack) || pack->type != kVariantPack || !pack->finalized)
    return bad(kBadParam, "cudnnBackendExecute: not a finalized variant pack");
  if (plan->handle != h) return bad(kBadParam, "cudnnBackendExecute: the plan was built for another handle");
  const Graph& g = *plan->graph;
  std::vector<const void*> ptr(g.tensors.size(), nullptr);
  for (size_t i = 0; i < pack->uids.size(); i++) {
    size_t k = 0;
    while (k < g.tensors.size() && g.tensors[k].uid != pack->uids[i]) k++;
    if (k == g.tensors.size() || g.tensors[k].is_virtual)
      return bad(kBadParam, "variant pack: unique id " + std::to_string(pack->uids[i]) + " is not a non-virtual tensor of the graph");
    ptr[k] = pack->ptrs[i];
  }
  for (size_t k = 0; k < g.tensors.size(); k++) {
    const TensorInfo& t = g.tensors[k];
    if (t.is_virtual) continue;
    std::string id = "tensor " + std::to_string(t.uid);
    if (!ptr[k]) return bad(kBadParam, "cudnnBackendExecute: the variant pack has no pointer for " + id);
    if (alignment_of(ptr[k]) < t.align)
      return bad(kMisaligned, "cudnnBackendExecute: " + id + " is " + std::to_string(alignment_of(ptr[k])) + "-byte aligned, declared " +
                                  std::to_string(t.align));
    size_t bytes = size_t(extent(t)) * elem_size(t.type);
    if (!is_device_range(ptr[k], bytes))
      return bad(kBadParam,
                 "cudnnBackendExecute: " + id + " spans " + std::to_string(bytes) + " bytes that are not inside one device allocation");
  }
  if (plan->workspace > 0 && (!pack->ws || !is_device_range(pack->ws, size_t(plan->workspace))))
    return bad(kBadParam, "cudnnBackendExecute: the plan needs " + std::to_string(plan->workspace) + " bytes of device workspace");
  if (uncapturable(true)) return kExecutionFailedCudart;
  // Everything the work needs is captured now: descriptors may change or die once this returns.
  std::shared_ptr<const Graph> graph = plan->graph;
  int64_t engine = plan->engine;
  void* ws = pack->ws;
  bool ok = enqueue(h->stream, [graph, engine, ptr, ws] { return run_graph(*graph, engine, ptr, ws); });
  return ok ? kOk : bad(kBadParam, "cudnnBackendExecute: the handle's stream is not a live stream");
}

// ---- the exported functions

Status Create(Handle** h) {
  if (!h) return bad(kBadParam, "cudnnCreate: null handle pointer");
  *h = new Handle();
  track(R().handles, *h);
  return kOk;
}
Status Destroy(Handle* h) { return untrack(R().handles, h, "cudnnDestroy"); }
Status SetStream(Handle* h, cudaStream_t s) {
  if (!live(h)) return bad(kBadParam, "cudnnSetStream: not a live handle");
  h->stream = s;
  return kOk;
}
const char* ErrorString(Status s) {
  switch (s) {
    case kOk: return "CUDNN_STATUS_SUCCESS";
    case kNotInitialized: return "CUDNN_STATUS_NOT_INITIALIZED";
    case kBadParam: return "CUDNN_STATUS_BAD_PARAM";
    case kNullPointer: return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
    case kMisaligned: return "CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER";
    case kNotFinalized: return "CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED";
    case kShapeMismatch: return "CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH";
    case kAttributeType: return "CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE";
    case kDescriptorType: return "CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE";
    case kNotSupported: return "CUDNN_STATUS_NOT_SUPPORTED";
    case kGraphPattern: return "CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN";
    case kExecutionFailedCudart: return "CUDNN_STATUS_EXECUTION_FAILED_CUDART";
  }
  return "CUDNN_STATUS_UNKNOWN (emulation)";
}
size_t Version() { return 91400; }  // the 9.x the stand-in follows; the API subset is unchanged across 9.x

Status CreateDescriptor(int32_t type, Desc** out) {
  if (!out) return bad(kBadParam, "cudnnBackendCreateDescriptor: null result pointer");
  *out = nullptr;
  if (type != kPointwise && type != kConvolution && type != kEngineCfg && type != kEngineHeur && type != kPlan && type != kConvFwd &&
      type != kPointwiseOp && type != kGraph && type != kVariantPack && type != kTensor)
    return kNotSupported;
  *out = new Desc();
  (*out)->type = type;
  track(R().descs, *out);
  return kOk;
}
Status DestroyDescriptor(Desc* d) { return untrack(R().descs, d, "cudnnBackendDestroyDescriptor"); }
Status Finalize(Desc* d) {
  if (!live(d)) return bad(kBadParam, "cudnnBackendFinalize: not a live descriptor");
  if (d->finalized) return bad(kBadParam, "cudnnBackendFinalize: the descriptor is already finalized");
  Status s = finalize(d);
  d->finalized = s == kOk;
  return s;
}
Status SetAttribute(Desc* d, int32_t name, int32_t type, int64_t count, const void* v) {
  if (!live(d)) return bad(kBadParam, "cudnnBackendSetAttribute: not a live descriptor");
  if (d->finalized)
    return bad(kNotInitialized, "cudnnBackendSetAttribute: attribute " + std::to_string(name) + " set on a finalized descriptor");
  std::string label = "attribute " + std::to_string(name);
  return set_attribute(d, name, Setter{d, label.c_str(), type, count, v});
}
Status GetAttribute(Desc* d, int32_t name, int32_t type, int64_t requested, int64_t* count, void* out) {
  if (!live(d)) return bad(kBadParam, "cudnnBackendGetAttribute: not a live descriptor");
  if (!d->finalized)
    return bad(kNotInitialized, "cudnnBackendGetAttribute: attribute " + std::to_string(name) + " read from a descriptor not finalized");
  if (!count || requested < 0 || (requested > 0 && !out))
    return bad(kBadParam, "cudnnBackendGetAttribute: bad element count or null pointers");
  if (d->type == kEngineHeur && name == 202) {
    if (type != kTDescriptor) return bad(kAttributeType, "CUDNN_ATTR_ENGINEHEUR_RESULTS is CUDNN_TYPE_BACKEND_DESCRIPTOR");
    int64_t n = std::min<int64_t>(requested, int64_t(d->engines.size()));
    for (int64_t i = 0; i < n; i++) {
      Desc* cfg = static_cast<Desc**>(out)[i];
      if (!live(cfg) || cfg->type != kEngineCfg)
        return bad(kBadParam, "CUDNN_ATTR_ENGINEHEUR_RESULTS: element " + std::to_string(i) + " is not a live engine config descriptor");
      cfg->graph = d->graph;
      cfg->engine = d->engines[size_t(i)];
      cfg->finalized = true;
    }
    *count = requested == 0 ? int64_t(d->engines.size()) : n;
    return kOk;
  }
  if (d->type == kPlan && name == 402) {
    if (type != kTInt64) return bad(kAttributeType, "CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE is CUDNN_TYPE_INT64");
    if (requested >= 1) std::memcpy(out, &d->workspace, sizeof(int64_t));
    *count = 1;
    return kOk;
  }
  return bad(kBadParam, "cudnnBackendGetAttribute: attribute " + std::to_string(name) + " of descriptor type " + std::to_string(d->type) +
                            " is not emulated");
}
Status Execute(Handle* h, Desc* plan, Desc* pack) { return execute(h, plan, pack); }

struct Symbol {
  const char* name;
  void* fn;
};
#define SYM(name, fn) \
  { name, reinterpret_cast<void*>(&fn) }
const Symbol kCudnn[] = {
    SYM("cudnnCreate", Create),
    SYM("cudnnDestroy", Destroy),
    SYM("cudnnSetStream", SetStream),
    SYM("cudnnGetErrorString", ErrorString),
    SYM("cudnnGetVersion", Version),
    SYM("cudnnBackendCreateDescriptor", CreateDescriptor),
    SYM("cudnnBackendDestroyDescriptor", DestroyDescriptor),
    SYM("cudnnBackendFinalize", Finalize),
    SYM("cudnnBackendSetAttribute", SetAttribute),
    SYM("cudnnBackendGetAttribute", GetAttribute),
    SYM("cudnnBackendExecute", Execute),
};
#undef SYM

}  // namespace

void* cudnn_symbol(const char* symbol) {
  for (const Symbol& s : kCudnn)
    if (std::strcmp(s.name, symbol) == 0) return s.fn;
  return nullptr;
}

}  // namespace pg25::emu
