// Normalisation modes (METRICS.md §4).
#include "phasemap/metrics/normalize.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "phasemap/metrics/quantile.hpp"
#include "phasemap/metrics/value.hpp"

namespace phasemap::metrics {

std::string_view to_string(NormMode m) {
    switch (m) {
        case NormMode::raw: return "raw";
        case NormMode::clipped_mad: return "clipped_mad";
    }
    return "?";
}

std::optional<NormMode> parse_norm_mode(std::string_view s) {
    if (s == "raw") return NormMode::raw;
    if (s == "clipped_mad") return NormMode::clipped_mad;
    return std::nullopt;
}

namespace {

// Selection of order statistics by one histogram pass: values are put into up to kBins bins by
// floor((x − mn) · scale), which is monotone in x (every rounding step is), so each bin holds a
// contiguous range of the sorted values; only the bins holding the wanted ranks are kept and
// selected among. The results are the order statistics themselves, so they equal what a full
// selection (stats::median_inplace) finds, whatever the binning does with the data.
struct SelectScratch {
    static constexpr std::size_t kBins = 2048;
    std::vector<double> cand;
    std::vector<std::uint32_t> hist;
    explicit SelectScratch(std::size_t n) : cand(n), hist(kBins) {}
};

struct OrderPair {
    double a, b;  // x_(r−1) (b itself when r = 0) and x_(r), ranks 0-based
};

// x[0, n) within [mn, mx] (finite), 0 ≤ r < n.
OrderPair order_pair(const double* x, std::size_t n, std::size_t r, double mn, double mx, SelectScratch& s) {
    if (!(mn < mx)) return {mn, mn};  // every value equals mn
    double* cand = s.cand.data();
    std::size_t nb = std::min(SelectScratch::kBins, n);
    const double scale = static_cast<double>(nb) / (mx - mn);
    std::size_t m = 0, rr = r;
    if (!std::isfinite(scale)) {  // a range too small to divide: select among all values
        std::copy(x, x + n, cand);
        m = n;
    } else {
        const int top = static_cast<int>(nb) - 1;
        const auto bin_of = [&](double v) { return std::min(static_cast<int>((v - mn) * scale), top); };
        std::uint32_t* h = s.hist.data();
        std::fill(h, h + nb, 0u);
        for (std::size_t i = 0; i < n; ++i) ++h[bin_of(x[i])];
        std::size_t bin = 0, below = 0;
        while (below + h[bin] <= r) below += h[bin++];
        std::size_t blo = bin;
        if (r == below && r > 0)  // x_(r−1) lies in the nearest non-empty bin below
            do below -= h[--blo];
            while (h[blo] == 0);
        rr = r - below;
        const auto lo = static_cast<unsigned>(blo), span = static_cast<unsigned>(bin - blo);
        for (std::size_t i = 0; i < n; ++i) {
            const double v = x[i];
            cand[m] = v;
            m += static_cast<unsigned>(bin_of(v)) - lo <= span;
        }
    }
    std::nth_element(cand, cand + rr, cand + m);
    const double b = cand[rr];
    return {rr > 0 ? *std::max_element(cand, cand + rr) : b, b};
}

// numpy's linear median of x[0, n) (n ≥ 1, values within [mn, mx]), as stats::median_inplace
// computes it: x_(n/2) for odd n, b − (b − a)·0.5 with a = x_(n/2 − 1), b = x_(n/2) for even n.
double median_of(const double* x, std::size_t n, double mn, double mx, SelectScratch& s) {
    const OrderPair o = order_pair(x, n, n / 2, mn, mx, s);
    return n % 2 == 1 ? o.b : o.b - (o.b - o.a) * 0.5;
}

}  // namespace

std::vector<double> clipped_mad(const RowsView<float>& states, double k) {
    if (!(k > 0) || !std::isfinite(k)) throw MetricError("clipped_mad: k must be a positive finite number");
    const std::size_t T = states.rows, d = states.cols;
    std::vector<double> out(T * d);
    if (T == 0 || d == 0) return out;
    // The states are transposed once, reading whole rows: the writes go to d columns at once, whose
    // d current cache lines stay resident, and each dimension is then one contiguous column.
    // The column stride is padded by one cache line: with T a power of two, columns T floats apart
    // would all map to the same cache sets.
    const std::size_t ld = T + 16;
    std::vector<float> tr(d * ld);
    bool finite = true;
    for (std::size_t t = 0; t < T; ++t) {
        const float* h = states.row(t);
        for (std::size_t j = 0; j < d; ++j) {
            const float x = h[j];
            finite &= std::fabs(x) <= std::numeric_limits<float>::max();
            tr[j * ld + t] = x;
        }
    }
    if (!finite) {  // named in the order of the earlier 16-dimension blocks: block, token, dimension
        constexpr std::size_t kBlock = 16;
        for (std::size_t j0 = 0; j0 < d; j0 += kBlock)
            for (std::size_t t = 0; t < T; ++t)
                for (std::size_t j = j0; j < std::min(d, j0 + kBlock); ++j)
                    if (!std::isfinite(states.row(t)[j]))
                        throw MetricError("clipped_mad: non-finite value in the state of token " + std::to_string(t) +
                                          ", dimension " + std::to_string(j));
    }
    std::vector<double> c(T), dev(T), meds(d), scales(d);
    SelectScratch scratch(T);
    for (std::size_t j = 0; j < d; ++j) {
        const float* col = &tr[j * ld];
        double mn = col[0], mx = col[0];
        for (std::size_t t = 0; t < T; ++t) {
            const double x = col[t];
            c[t] = x;
            mn = std::min(mn, x);
            mx = std::max(mx, x);
        }
        // + 0.0 turns a −0 median into +0: which zero the earlier nth_element-only code returned
        // was unspecified, and only the sign of a zero z can depend on it.
        const double med = median_of(c.data(), T, mn, mx, scratch) + 0.0;
        for (std::size_t t = 0; t < T; ++t) dev[t] = std::fabs(c[t] - med);
        // The deviations are monotone in |x − med|, so the largest is at an extreme.
        const double dmax = std::max(std::fabs(mn - med), std::fabs(mx - med));
        meds[j] = med;
        scales[j] = kMadScale * median_of(dev.data(), T, 0.0, dmax, scratch) + kMadEpsilon;
    }
    for (std::size_t t = 0; t < T; ++t) {
        double* o = &out[t * d];
        for (std::size_t j = 0; j < d; ++j) o[j] = std::clamp((tr[j * ld + t] - meds[j]) / scales[j], -k, k);
    }
    return out;
}

CtClipResult ct_clip(std::span<double> ct, double k) {
    if (!(k > 0) || !std::isfinite(k)) throw MetricError("ct_clip: k must be a positive finite number");
    std::vector<double> v;
    v.reserve(ct.size());
    for (double x : ct)
        if (std::isfinite(x)) v.push_back(x);
    CtClipResult r;
    if (v.empty()) {
        r.threshold = kNaN;
        return r;
    }
    const double med = median_inplace(v);
    for (double& x : v) x = std::fabs(x - med);
    const double mad = median_inplace(v);
    r.threshold = med + k * kMadScale * mad;
    for (double& x : ct)
        if (std::isfinite(x) && x > r.threshold) {
            x = r.threshold;
            ++r.n_clipped;
        }
    return r;
}

}  // namespace phasemap::metrics
