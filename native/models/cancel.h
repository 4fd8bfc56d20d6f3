// Stopping a forward pass part-way: the JS side sets the flag when its AbortSignal fires, and the
// running job throws at the next block boundary instead of finishing work nobody will read.
#pragma once
#include <atomic>

#include "../core/error.h"

namespace pg25 {

using CancelFlag = std::atomic<bool>;

// Throws the JS side's abort code when `flag` (may be null: not cancellable) is set.
inline void check_cancel(const CancelFlag* flag) {
  if (flag && flag->load(std::memory_order_relaxed)) throw Error(Code::Aborted, "The operation was aborted");
}

}  // namespace pg25
