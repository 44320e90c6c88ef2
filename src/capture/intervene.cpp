// Intervention arithmetic on one hidden-state row, validation and random-direction controls
// (include/phasemap/capture/intervene.hpp). No llama.cpp here: the engine calls apply_intervention on
// rows of the graph tensor it was handed by the eval callback.
#include "phasemap/metrics/option_domains.hpp"
#include "phasemap/capture/intervene.hpp"
#include "phasemap/stats/rng.hpp"

#include <fmt/core.h>

#include <cmath>
#include <random>
#include <stdexcept>

namespace phasemap::capture {

const char* op_name(InterventionOp op) {
    switch (op) {
        case InterventionOp::add: return "add";
        case InterventionOp::scale: return "scale";
        case InterventionOp::clamp_norm: return "clamp";
        case InterventionOp::damp: return "damp";
        case InterventionOp::project_out: return "project-out";
        case InterventionOp::noise: return "noise";
        case InterventionOp::hook: return "hook";
    }
    return "?";
}

bool op_takes_vector(InterventionOp op) { return op == InterventionOp::add || op == InterventionOp::project_out; }

std::string Intervention::describe() const {
    std::string s = fmt::format("{}{} block:{}", random_direction ? "random-" : "", op_name(op), block);
    if (op != InterventionOp::project_out || strength != 1.0) s += fmt::format(" ×{}", strength);
    if (t_begin != 0 || t_end != INT_MAX)
        s += t_end == INT_MAX ? fmt::format(" @t={}-", t_begin) : fmt::format(" @t={}-{}", t_begin, t_end - 1);
    if (prefill) s += " +prefill";
    if (!label.empty()) s += " (" + label + ")";
    return s;
}

namespace {

// Standard normal deviates from a 64-bit generator by Box–Muller on 53-bit uniforms: the same
// sequence on every platform (std::normal_distribution is implementation-defined).
struct PortableNormal {
    std::mt19937_64 rng;
    bool has_spare = false;
    double spare = 0;
    explicit PortableNormal(uint64_t seed) : rng(seed) {}
    double uniform() { return (double(rng() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }  // (0, 1)
    double operator()() {
        if (has_spare) { has_spare = false; return spare; }
        const double u1 = uniform(), u2 = uniform();
        const double r = std::sqrt(-2.0 * std::log(u1)), a = 6.283185307179586 * u2;
        spare = r * std::sin(a);
        has_spare = true;
        return r * std::cos(a);
    }
};

uint64_t mix(uint64_t x) { return stats::derive_seed(x, 0); }  // splitmix64 (stats/rng.hpp): its first output from x

double norm2(std::span<const float> v) {
    double s = 0;
    for (float x : v) s += double(x) * x;
    return std::sqrt(s);
}

}  // namespace

std::vector<float> random_direction(size_t n, double norm, uint64_t seed) {
    PortableNormal g(mix(seed ^ 0x72616e646f6d6469ULL));
    std::vector<double> z(n);
    double s = 0;
    for (auto& x : z) { x = g(); s += x * x; }
    s = std::sqrt(s);
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = float(z[i] / s * norm);
    return out;
}

void resolve_interventions(std::vector<Intervention>& ivs, int n_layer, int n_embd) {
    for (size_t k = 0; k < ivs.size(); ++k) {
        Intervention& iv = ivs[k];
        auto fail = [&](const std::string& why) {
            throw std::invalid_argument(fmt::format("intervention {} ({}): {}", k + 1, iv.describe(), why));
        };
        if (iv.block < 0 || iv.block >= n_layer)
            fail(fmt::format("layer block:{} is out of range (the model has blocks 0..{})", iv.block, n_layer - 1));
        if (iv.t_begin < 0 || iv.t_end <= iv.t_begin) fail(fmt::format("empty token range [{}, {})", iv.t_begin, iv.t_end));
        if (!std::isfinite(iv.strength)) fail("strength is not finite");
        if (const std::string p = opt::domain_problem(iv.strength, opt::kScale); !p.empty()) fail("strength " + p);
        if (op_takes_vector(iv.op)) {
            if (int(iv.vec.size()) != n_embd)
                fail(fmt::format("vector has {} values, the model's hidden size n_embd is {}", iv.vec.size(), n_embd));
            for (float x : iv.vec)
                if (!std::isfinite(x)) fail("vector holds a non-finite value");
            const double n = norm2(iv.vec);
            if (iv.op == InterventionOp::project_out && n == 0) fail("cannot project out a zero vector");
            if (iv.random_direction) {
                iv.vec = random_direction(size_t(n_embd), n, iv.seed);
                iv.random_direction = false;
                iv.label += iv.label.empty() ? "random direction" : ", random direction";
            }
        } else {
            if (iv.random_direction) fail("a random-direction control exists only for add and project-out");
            if (!iv.vec.empty()) fail(fmt::format("{} takes no vector", op_name(iv.op)));
        }
        switch (iv.op) {
            case InterventionOp::damp:
                if (iv.strength < 0 || iv.strength > 1) fail(fmt::format("damping α = {} is outside [0, 1]", iv.strength));
                break;
            case InterventionOp::project_out:
                if (iv.strength < 0 || iv.strength > 1) fail(fmt::format("projection strength {} is outside [0, 1]", iv.strength));
                break;
            case InterventionOp::clamp_norm:
                if (iv.strength <= 0) fail(fmt::format("clamp needs a maximum norm > 0 (got {})", iv.strength));
                break;
            case InterventionOp::noise:
                if (iv.strength < 0) fail(fmt::format("noise σ must be ≥ 0 (got {})", iv.strength));
                break;
            case InterventionOp::hook:
                if (!iv.hook) fail("a hook intervention needs a function");
                break;
            default: break;
        }
    }
}

void apply_intervention(const Intervention& iv, std::span<float> h, int t, uint64_t seq_key, InterventionState* st) {
    const size_t d = h.size();
    switch (iv.op) {
        case InterventionOp::add: {
            const float s = float(iv.strength);
            if (s == 0.0f) break;  // bitwise identical to no intervention
            for (size_t j = 0; j < d; ++j) h[j] += s * iv.vec[j];
            break;
        }
        case InterventionOp::scale: {
            const float s = float(iv.strength);
            for (auto& x : h) x *= s;
            break;
        }
        case InterventionOp::clamp_norm: {
            const double n = norm2(h);
            if (n > iv.strength) {
                const double f = iv.strength / n;
                for (auto& x : h) x = float(double(x) * f);
            }
            break;
        }
        case InterventionOp::damp: {
            if (!st) break;
            const bool active = t < 0 ? iv.prefill : iv.active_at(t);
            if (!st->prev.empty() && active && iv.strength != 0) {
                const float a = float(iv.strength);
                if (a == 1.0f) {
                    std::copy(st->prev.begin(), st->prev.end(), h.begin());  // exact freeze
                } else {
                    for (size_t j = 0; j < d; ++j) h[j] -= a * (h[j] - st->prev[j]);
                }
            }
            st->prev.assign(h.begin(), h.end());
            break;
        }
        case InterventionOp::project_out: {
            if (iv.strength == 0) break;
            double n = 0, dot = 0;
            for (size_t j = 0; j < d; ++j) {
                n += double(iv.vec[j]) * iv.vec[j];
                dot += double(iv.vec[j]) * h[j];
            }
            const double c = iv.strength * dot / n;
            for (size_t j = 0; j < d; ++j) h[j] = float(double(h[j]) - c * iv.vec[j]);
            break;
        }
        case InterventionOp::noise: {
            if (iv.strength == 0) break;
            PortableNormal g(mix(iv.seed ^ mix(seq_key ^ mix(uint64_t(int64_t(t)) + 0x6e6f697365ULL))));
            for (auto& x : h) x = float(double(x) + iv.strength * g());
            break;
        }
        case InterventionOp::hook:
            iv.hook(h, t, seq_key);
            break;
    }
}

}  // namespace phasemap::capture
