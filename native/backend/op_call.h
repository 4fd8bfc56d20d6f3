// Any op of the backend interface by name, with its arguments checked: what Engine.op exposes, so
// tests can compare one backend's op with another's (the CUDA emulation against the CPU) on edge shapes.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "backend.h"

namespace pg25 {

struct OpArgs {
  std::vector<const Tensor*> inputs;  // a null entry is an absent optional input (a bias)
  std::map<std::string, double> num;
  std::map<std::string, std::vector<double>> list;
};

// Runs op `name` on `be`; throws PG25_INVALID_ARGUMENT naming the op and what is wrong.
Tensor call_op(Backend& be, const std::string& name, const OpArgs& args);

}  // namespace pg25
