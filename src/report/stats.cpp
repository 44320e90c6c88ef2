// Small numerics behind the report: bootstrap CI of a median, peak-preserving downsampling of
// token series, and average-linkage clustering for the topology dendrogram.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "phasemap/report.hpp"

namespace phasemap::report {

namespace {

double median_of(std::vector<double>& v) {
    const size_t n = v.size();
    std::nth_element(v.begin(), v.begin() + n / 2, v.end());
    double hi = v[n / 2];
    if (n % 2) return hi;
    double lo = *std::max_element(v.begin(), v.begin() + n / 2);
    return 0.5 * (lo + hi);
}

// numpy's default (linear) quantile of sorted values.
double quantile_sorted(const std::vector<double>& s, double q) {
    const double pos = q * static_cast<double>(s.size() - 1);
    const size_t i = static_cast<size_t>(std::floor(pos));
    const size_t j = std::min(i + 1, s.size() - 1);
    return s[i] + (pos - static_cast<double>(i)) * (s[j] - s[i]);
}

}  // namespace

MedianCI median_ci(std::vector<double> v, size_t resamples, uint64_t seed) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::erase_if(v, [](double x) { return !std::isfinite(x); });
    if (v.empty()) return {nan, nan, nan};
    std::vector<double> w = v;
    const double med = median_of(w);
    if (v.size() < 2 || resamples == 0) return {med, nan, nan};
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<size_t> pick(0, v.size() - 1);
    std::vector<double> meds(resamples), s(v.size());
    for (auto& m : meds) {
        for (auto& x : s) x = v[pick(rng)];
        m = median_of(s);
    }
    std::sort(meds.begin(), meds.end());
    return {med, quantile_sorted(meds, 0.025), quantile_sorted(meds, 0.975)};
}

std::vector<size_t> downsample_peaks(const std::vector<double>& v, size_t max_points, size_t& bucket) {
    const size_t n = v.size();
    max_points = std::max<size_t>(max_points, 1);
    bucket = n <= max_points ? 1 : (n + max_points - 1) / max_points;
    std::vector<size_t> keep;
    for (size_t b = 0; b < n; b += bucket) {
        size_t best = b;
        double bv = -std::numeric_limits<double>::infinity();
        for (size_t i = b; i < std::min(n, b + bucket); ++i)
            if (std::isfinite(v[i]) && v[i] > bv) bv = v[i], best = i;
        keep.push_back(best);
    }
    return keep;
}

namespace {

// Lay out a binary merge tree: leaves ordered left to right, each merge drawn as two vertical
// rules from the children's heights up to the merge height plus one horizontal rule.
Dendrogram layout(size_t n, const std::vector<std::array<double, 3>>& merges) {
    Dendrogram out;
    out.segments = nlohmann::json::array();
    if (n == 0) return out;
    // children of node id (ids < n are leaves, n + k is merge k)
    std::vector<std::vector<size_t>> leaves(n + merges.size());
    for (size_t i = 0; i < n; ++i) leaves[i] = {i};
    for (size_t k = 0; k < merges.size(); ++k) {
        const auto a = static_cast<size_t>(merges[k][0]), b = static_cast<size_t>(merges[k][1]);
        if (a >= n + k || b >= n + k) throw std::runtime_error("linkage refers to a later cluster");
        leaves[n + k] = leaves[a];
        leaves[n + k].insert(leaves[n + k].end(), leaves[b].begin(), leaves[b].end());
    }
    const size_t root = merges.empty() ? 0 : n + merges.size() - 1;
    out.order = leaves[root];
    if (out.order.size() != n) {  // a forest: append whatever the tree missed
        std::vector<bool> seen(n);
        for (size_t i : out.order) seen[i] = true;
        for (size_t i = 0; i < n; ++i)
            if (!seen[i]) out.order.push_back(i);
    }
    std::vector<double> pos(n + merges.size()), height(n + merges.size(), 0.0);
    for (size_t i = 0; i < n; ++i) pos[out.order[i]] = static_cast<double>(i) + 0.5;
    for (size_t k = 0; k < merges.size(); ++k) {
        const auto a = static_cast<size_t>(merges[k][0]), b = static_cast<size_t>(merges[k][1]);
        const double h = merges[k][2];
        pos[n + k] = 0.5 * (pos[a] + pos[b]);
        height[n + k] = h;
        out.segments.push_back({{"x", pos[a]}, {"x2", pos[a]}, {"y", height[a]}, {"y2", h}});
        out.segments.push_back({{"x", pos[b]}, {"x2", pos[b]}, {"y", height[b]}, {"y2", h}});
        out.segments.push_back({{"x", pos[a]}, {"x2", pos[b]}, {"y", h}, {"y2", h}});
    }
    return out;
}

}  // namespace

Dendrogram dendrogram_from_linkage(size_t n, const std::vector<std::array<double, 3>>& merges) {
    return layout(n, merges);
}

Dendrogram cluster_average(const std::vector<std::vector<double>>& d) {
    const size_t n = d.size();
    for (const auto& row : d)
        if (row.size() != n) throw std::runtime_error("distance matrix is not square");
    // UPGMA: clusters as (id, members); distance = mean pairwise leaf distance.
    std::vector<std::pair<size_t, std::vector<size_t>>> active;
    for (size_t i = 0; i < n; ++i) active.push_back({i, {i}});
    std::vector<std::array<double, 3>> merges;
    auto dist = [&](const std::vector<size_t>& a, const std::vector<size_t>& b) {
        double s = 0;
        size_t c = 0;
        for (size_t i : a)
            for (size_t j : b)
                if (std::isfinite(d[i][j])) s += d[i][j], ++c;
        return c ? s / static_cast<double>(c) : std::numeric_limits<double>::infinity();
    };
    while (active.size() > 1) {
        size_t bi = 0, bj = 1;
        double best = std::numeric_limits<double>::infinity();
        for (size_t i = 0; i < active.size(); ++i)
            for (size_t j = i + 1; j < active.size(); ++j) {
                const double x = dist(active[i].second, active[j].second);
                if (x < best) best = x, bi = i, bj = j;
            }
        if (!std::isfinite(best)) best = merges.empty() ? 0.0 : merges.back()[2];  // disconnected: join at the top
        std::vector<size_t> members = active[bi].second;
        members.insert(members.end(), active[bj].second.begin(), active[bj].second.end());
        merges.push_back({static_cast<double>(active[bi].first), static_cast<double>(active[bj].first), best});
        const size_t id = n + merges.size() - 1;
        active.erase(active.begin() + static_cast<std::ptrdiff_t>(bj));
        active[bi] = {id, std::move(members)};
    }
    return layout(n, merges);
}

}  // namespace phasemap::report
