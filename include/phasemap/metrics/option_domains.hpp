// The validated option layer (docs/hardening.md, class 2): the domain of every numeric setting,
// shared by the CLI flags (src/cli/options.hpp turns a domain into a CLI11 validator) and the
// panel manifest's fields (src/panel/manifest.cpp), and by the metric options' own validate().
// Header-only and pure: no I/O, no dependencies.
//
// Owns: nothing; constexpr domains. Throws: nothing (callers turn a domain into their own error).
#pragma once
#include <cmath>
#include <cstdio>
#include <string>

namespace phasemap::opt {

struct Domain {
    double lo, hi;
    bool lo_open = false;   // (lo, hi] instead of [lo, hi]
    bool integer = false;   // whole numbers only
};

// Sampling.
inline constexpr Domain kTemperature{0, 100};
inline constexpr Domain kTopP{0, 1, true};
inline constexpr Domain kTopK{0, 1e9, false, true};
// Engine sizes (a context above the model's training context is refused by the engine itself).
inline constexpr Domain kThreads{0, 4096, false, true};        // 0 = $PHASEMAP_THREADS or all cores
inline constexpr Domain kPoll{0, 100, false, true};            // worker busy-wait level (capture::ThreadOptions)
inline constexpr Domain kContext{0, 1 << 24, false, true};      // 0 = automatic
inline constexpr Domain kNPredict{1, 1 << 24, false, true};
inline constexpr Domain kParallel{1, 4096, false, true};
// Scales of control vectors, LoRA adapters and intervention strengths: finite and bounded (a
// strength of 1e39 overflows float; 1e6 is far past anything that keeps a model coherent).
inline constexpr Domain kScale{-1e6, 1e6};
// Resampling counts: each costs a pass over the data, so they are capped.
inline constexpr Domain kResamples{0, 1e6, false, true};        // bootstrap, permutations
inline constexpr Domain kShuffles{0, 1e5, false, true};         // shuffled-order controls per run
// Random-weight MoE models (make-model --experts / --experts-used): llama.cpp's LLAMA_MAX_EXPERTS
// is 1024, and it reads one expert as a dense model.
inline constexpr Domain kExperts{2, 1024, false, true};
inline constexpr Domain kExpertsUsed{1, 1024, false, true};
inline constexpr Domain kModelDim{1, 1 << 20, false, true};     // make-model --n-embd / --n-ff
inline constexpr Domain kModelBlocks{1, 512, false, true};      // make-model --n-layer (llama.cpp's limit)
// Output-state thresholds (METRICS.md: top1 and margin are probabilities, entropy in nats).
inline constexpr Domain kProbability{0, 1};
inline constexpr Domain kEntropy{0, 1e6};

inline std::string format_number(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    char b[64];
    std::snprintf(b, sizeof b, "%.10g", v);
    return b;
}

inline std::string describe(const Domain& d) {
    const std::string lo = format_number(d.lo), hi = format_number(d.hi);
    return std::string(d.lo_open ? "(" : "[") + lo + ", " + hi + "]" + (d.integer ? " (whole numbers)" : "");
}

// "" when `v` lies in `d`; otherwise the problem in words (the caller adds the option's name).
inline std::string domain_problem(double v, const Domain& d) {
    if (!std::isfinite(v)) return format_number(v) + " is not a finite number (expected " + describe(d) + ")";
    if (d.integer && v != std::floor(v)) return format_number(v) + " is not a whole number";
    const bool below = d.lo_open ? !(v > d.lo) : !(v >= d.lo);
    if (below || !(v <= d.hi)) return format_number(v) + " is outside " + describe(d);
    return {};
}

}  // namespace phasemap::opt
