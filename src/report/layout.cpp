// Presentation layout of the report: peak-preserving downsampling of token series and the drawing
// of a dendrogram from a linkage. No statistics here: intervals and clustering come from src/stats.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "phasemap/report/report.hpp"

namespace phasemap::report {

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

}  // namespace phasemap::report
