// MoE routing metrics (docs/metrics-moe.md).
#include "phasemap/metrics/routing.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace phasemap::metrics {

namespace {

// Plug-in entropy (nats) of counts with total n.
double entropy_of_counts(const std::vector<double>& c, double n) {
    double h = 0;
    for (double x : c)
        if (x > 0) h -= (x / n) * std::log(x / n);
    return h;
}

Value mean_of_defined(const std::vector<Value>& vs, const std::string& none_reason) {
    double s = 0;
    std::size_t n = 0;
    for (const Value& v : vs)
        if (v.ok()) s += v.v, ++n;
    if (n > 0) return Value::of(s / double(n));
    for (const Value& v : vs)
        if (!v.missing_reason.empty()) return Value::missing(v.missing_reason);
    return Value::missing(none_reason);
}

}  // namespace

double routing_entropy(std::span<const float> w) {
    double sum = 0;
    for (float x : w) {
        if (!std::isfinite(x) || x < 0) return kNaN;
        sum += double(x);
    }
    if (!(sum > 0) || !std::isfinite(sum)) return kNaN;
    double h = 0;
    for (float x : w) {
        const double p = double(x) / sum;
        if (p > 0) h -= p * std::log(p);
    }
    return h;
}

RoutingResult routing_metrics(const RoutingView& v) {
    const std::size_t T = v.tokens, M = v.blocks, k = v.k, E = v.n_expert;
    if (k == 0) throw MetricError("routing: k (experts selected per token) is 0");
    if (E == 0) throw MetricError("routing: the number of experts is 0");
    if (k > E) throw MetricError("routing: k = " + std::to_string(k) + " experts selected of only " + std::to_string(E));
    if (M == 0) throw MetricError("routing: no MoE blocks");
    if (!v.block_ids.empty() && v.block_ids.size() != M)
        throw MetricError("routing: " + std::to_string(v.block_ids.size()) + " block ids for " + std::to_string(M) + " MoE blocks");
    if (T > 0 && (v.experts == nullptr || v.weights == nullptr)) throw MetricError("routing: view has no data");

    // Validate ids and keep each (t, m)'s selection as a sorted set.
    std::vector<std::int32_t> sets(T * M * k);
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t m = 0; m < M; ++m) {
            std::int32_t* s = sets.data() + v.at(t, m);
            for (std::size_t j = 0; j < k; ++j) {
                const std::int32_t e = v.experts[v.at(t, m) + j];
                if (e < 0 || std::size_t(e) >= E)
                    throw MetricError("routing: expert id " + std::to_string(e) + " at token " + std::to_string(t) + ", MoE block " +
                                      std::to_string(m) + " is outside [0, " + std::to_string(E) + ")");
                s[j] = e;
            }
            std::sort(s, s + k);
            if (std::adjacent_find(s, s + k) != s + k)
                throw MetricError("routing: an expert is selected twice at token " + std::to_string(t) + ", MoE block " + std::to_string(m));
        }
    auto switched = [&](std::size_t t, std::size_t m) {  // t ≥ 1
        return !std::equal(sets.begin() + std::ptrdiff_t(v.at(t, m)), sets.begin() + std::ptrdiff_t(v.at(t, m) + k),
                           sets.begin() + std::ptrdiff_t(v.at(t - 1, m)));
    };

    RoutingResult r;
    r.tokens = T, r.blocks = M, r.k = k, r.n_expert = E;
    r.entropy.assign(T, kNaN);
    r.switch_share.assign(T, kNaN);
    std::vector<double> h(T * M);
    for (std::size_t t = 0; t < T; ++t) {
        double s = 0;
        std::size_t n = 0;
        for (std::size_t m = 0; m < M; ++m) {
            h[t * M + m] = routing_entropy({v.weights + v.at(t, m), k});
            if (std::isfinite(h[t * M + m])) s += h[t * M + m], ++n;
        }
        if (n > 0) r.entropy[t] = s / double(n);
        if (t > 0) {
            std::size_t sw = 0;
            for (std::size_t m = 0; m < M; ++m) sw += switched(t, m) ? 1 : 0;
            r.switch_share[t] = double(sw) / double(M);
        }
    }

    const std::string few = "fewer than 2 tokens";
    std::size_t all_switches = 0;
    std::vector<Value> load_h, load_imb;
    for (std::size_t m = 0; m < M; ++m) {
        RoutingLayerResult L;
        L.block = v.block_ids.empty() ? int(m) : v.block_ids[m];
        std::vector<double> hm(T);
        for (std::size_t t = 0; t < T; ++t) hm[t] = h[t * M + m];
        L.entropy = summarize(hm);
        if (T >= 2) {
            std::size_t sw = 0;
            for (std::size_t t = 1; t < T; ++t) sw += switched(t, m) ? 1 : 0;
            all_switches += sw;
            L.switch_rate = Value::of(double(sw) / double(T - 1));
        } else {
            L.switch_rate = Value::missing(few);
        }
        L.load.assign(E, 0.0);
        if (T == 0) {
            L.load_entropy = L.load_imbalance = Value::missing("no tokens");
        } else {
            for (std::size_t t = 0; t < T; ++t)
                for (std::size_t j = 0; j < k; ++j) L.load[std::size_t(v.experts[v.at(t, m) + j])] += 1.0;
            const double n = double(T * k);
            const double mx = *std::max_element(L.load.begin(), L.load.end());
            const double hl = entropy_of_counts(L.load, n);
            for (double& x : L.load) x /= n;
            L.load_entropy = E > 1 ? Value::of(hl / std::log(double(E))) : Value::missing("one expert per MoE block");
            L.load_imbalance = Value::of(double(E) * mx / n);
        }
        load_h.push_back(L.load_entropy);
        load_imb.push_back(L.load_imbalance);
        r.layers.push_back(std::move(L));
    }
    r.switch_rate = T >= 2 ? Value::of(double(all_switches) / double(M * (T - 1))) : Value::missing(few);
    r.load_entropy = mean_of_defined(load_h, "no tokens");
    r.load_imbalance = mean_of_defined(load_imb, "no tokens");

    // Adjacent MoE blocks.
    std::vector<Value> nmis, agrees;
    for (std::size_t m = 0; m + 1 < M; ++m) {
        RoutingPairResult p;
        p.block_a = r.layers[m].block, p.block_b = r.layers[m + 1].block;
        if (T < 2) {
            p.top1_nmi = p.switch_agreement = Value::missing(few);
        } else {
            std::vector<double> cx(E, 0.0), cy(E, 0.0), cxy(E * E, 0.0);
            for (std::size_t t = 0; t < T; ++t) {
                const auto x = std::size_t(v.experts[v.at(t, m)]), y = std::size_t(v.experts[v.at(t, m + 1)]);
                cx[x] += 1, cy[y] += 1, cxy[x * E + y] += 1;
            }
            const double n = double(T);
            const double hx = entropy_of_counts(cx, n), hy = entropy_of_counts(cy, n);
            if (hx == 0 || hy == 0) {
                p.top1_nmi = Value::missing("the top-1 expert of MoE block " + std::to_string(hx == 0 ? p.block_a : p.block_b) +
                                            " is the same at every token");
            } else {
                double mi = 0;
                for (std::size_t x = 0; x < E; ++x)
                    for (std::size_t y = 0; y < E; ++y)
                        if (const double c = cxy[x * E + y]; c > 0) mi += (c / n) * std::log(c * n / (cx[x] * cy[y]));
                p.top1_nmi = Value::of(std::clamp(mi / std::sqrt(hx * hy), 0.0, 1.0));
            }
            std::size_t both = 0, either = 0;
            for (std::size_t t = 1; t < T; ++t) {
                const bool a = switched(t, m), b = switched(t, m + 1);
                both += (a && b) ? 1 : 0;
                either += (a || b) ? 1 : 0;
            }
            p.switch_agreement = either > 0 ? Value::of(double(both) / double(either))
                                            : Value::missing("no expert switch in MoE block " + std::to_string(p.block_a) +
                                                             " or " + std::to_string(p.block_b));
        }
        nmis.push_back(p.top1_nmi);
        agrees.push_back(p.switch_agreement);
        r.pairs.push_back(std::move(p));
    }
    const std::string one = "needs at least 2 MoE blocks (the model has 1)";
    r.top1_nmi = mean_of_defined(nmis, one);
    r.switch_agreement = mean_of_defined(agrees, one);
    return r;
}

}  // namespace phasemap::metrics
