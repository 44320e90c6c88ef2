// Internal to src/capture: the explicit ggml CPU threadpool of an Engine (src/capture/threads.cpp).
#pragma once
#include <ggml.h>

#include "phasemap/capture/capture.hpp"

namespace phasemap::capture {

// A ggml threadpool of `n_threads` workers with `o`'s polling level and priority, no CPU mask
// (strict_cpu off); free it with ggml_threadpool_free after detaching it. Throws
// std::invalid_argument for a poll level outside [0, 100], std::runtime_error when ggml fails.
ggml_threadpool* make_threadpool(int n_threads, const ThreadOptions& o);

}  // namespace phasemap::capture
