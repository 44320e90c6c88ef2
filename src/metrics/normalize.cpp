// Normalisation modes (METRICS.md §4).
#include "phasemap/metrics/normalize.hpp"
#include "phasemap/metrics/mad_scaling.hpp"

#include "clones.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <string>

#include "phasemap/metrics/kernels.hpp"
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

// Exact selection of every dimension's median and MAD without sorting, in blocks of kCols
// dimensions whose rows are copied into a buffer that stays in cache (no transpose):
//   1. the range of every dimension over a sample of rows;
//   2. a kBins-bin histogram per dimension, bin = floor((x − min) · kBins / (max − min)) clamped
//      to the end bins, monotone in x (with the finiteness check); it gives the bins holding the
//      middle ranks and an approximate MAD (the bins merged outward from the median by the
//      distance of their centres);
//   3. one pass that counts, per dimension, the values below the median window and inside an
//      inner interval, and keeps the values of the median window and of the two MAD windows.
// The windows are only guesses: what makes the result exact is that the counts and the kept values
// are taken with the same thresholds, so the ranks of the kept values are known, and the deviation
// bounds of the values not kept are computed exactly from the thresholds (|x − med| is monotone on
// each side of med). A dimension whose windows miss (or hold more than kCap values), with fewer
// than kMinRows rows, or constant (or of a range too small to divide) over the sample, is selected
// exactly by nth_element instead. The three passes are kernels::select_range, select_histogram and
// select_windows, built per instruction set like the other row kernels.
constexpr std::size_t kCols = 64;            // dimensions per block
constexpr std::size_t kBins = 1024;          // histogram bins per dimension
constexpr std::size_t kHistStride = kBins + 16;  // no 4K aliasing between the dimensions' histograms
constexpr std::size_t kMinRows = 64;
constexpr std::size_t kRangeSample = 64;   // rows sampled for the histogram's range
constexpr std::size_t kCap = 1024;           // values kept per dimension and window

// numpy's linear median of a set of n values of which `below` are smaller than every v[0, m):
// x_(n/2) for odd n, b − (b − a)·0.5 with a = x_(n/2 − 1), b = x_(n/2) for even n, as
// stats::median_inplace computes it. False when those ranks are not all among v (v is reordered).
bool median_from(double* v, std::size_t m, std::size_t below, std::size_t n, double& out) {
    const std::size_t r = n / 2, need = n % 2 ? r : r - 1;
    if (below > need || below + m <= r) return false;
    const std::size_t rr = r - below;
    std::nth_element(v, v + rr, v + m);
    const double b = v[rr];
    out = n % 2 ? b : b - (b - *std::max_element(v, v + rr)) * 0.5;
    return true;
}

// Scratch of one block, allocated once per call; the large buffers are left uninitialised (every
// element is written before it is read).
template <class T>
struct Scratch {
    std::unique_ptr<T[]> p;
    explicit Scratch(std::size_t n) : p(new T[n]) {}
    T* data() { return p.get(); }
    T& operator[](std::size_t i) { return p[i]; }
};
struct Block {
    Scratch<float> buf, kept_med, kept_mad;
    Scratch<double> sel;
    std::vector<float> mn, mx, nz, a, b, p1, p0, q0, q1;
    std::vector<double> lo, sc;
    std::vector<float> lof, scf;
    std::vector<std::uint32_t> hist, below, inner, n_med, n_mad;
    std::vector<char> exact;
    explicit Block(std::size_t T)
        : buf(T * kCols), kept_med(kCols * kCap), kept_mad(kCols * kCap), sel(std::max(kCap, T)), hist(kCols * kHistStride) {
        for (auto* v : {&mn, &mx, &nz, &a, &b, &p1, &p0, &q0, &q1}) v->resize(kCols);
        for (auto* v : {&below, &inner, &n_med, &n_mad}) v->resize(kCols);
        lo.resize(kCols);
        sc.resize(kCols);
        lof.resize(kCols);
        scf.resize(kCols);
        exact.resize(kCols);
    }
};

// Median and scale of dimensions j0 … j0 + d − 1 (d ≤ kCols) into center[0, d), scale[0, d).
void block_scaling(const RowsView<float>& states, std::size_t j0, std::size_t d, Block& w, double* center, double* scale) {
    const std::size_t T = states.rows, r = T / 2, need = T % 2 ? r : r - 1;
    constexpr double inf = std::numeric_limits<double>::infinity();
    constexpr float finf = std::numeric_limits<float>::infinity();
    float* buf = w.buf.data();
    // The rows of one layer inside [T, L', d] lie far apart, beyond what the hardware prefetches:
    // the block's part of a row some tokens ahead is asked for while this one is copied.
    constexpr std::size_t kAhead = 16;
    for (std::size_t t = 0; t < T; ++t) {
        if (t + kAhead < T) kernels::prefetch(states.row(t + kAhead) + j0, d * sizeof(float));
        std::memcpy(buf + t * d, states.row(t) + j0, d * sizeof(float));
    }
    // The range of a sample of rows (values outside it fall into the end bins, which only widens
    // the windows); a dimension constant over the sample goes the exact way.
    std::copy_n(buf, d, w.mn.data());
    std::copy_n(buf, d, w.mx.data());
    std::fill_n(w.nz.data(), d, 0.0f);
    kernels::select_range(buf, T, d, T / kRangeSample, w.mn.data(), w.mx.data(), w.nz.data());
    bool any_fast = false;
    for (std::size_t j = 0; j < d; ++j) {
        w.lo[j] = w.mn[j];
        w.sc[j] = static_cast<double>(kBins) / (static_cast<double>(w.mx[j]) - static_cast<double>(w.mn[j]));
        w.lof[j] = w.mn[j];
        w.scf[j] = static_cast<float>(w.sc[j]);
        w.exact[j] = T < kMinRows || !std::isfinite(w.scf[j]) || !(w.scf[j] > 0);
        if (w.exact[j]) w.sc[j] = 0, w.scf[j] = 0;
        any_fast |= !w.exact[j];
    }
    // The histograms (all in bin 0 for the dimensions selected exactly), with the finiteness check.
    std::uint32_t* hist = w.hist.data();
    std::fill_n(hist, d * kHistStride, 0u);
    kernels::select_histogram(buf, T, d, w.lof.data(), w.scf.data(), kBins, hist, kHistStride, w.nz.data());
    for (std::size_t j = 0; j < d; ++j)
        if (w.nz[j] != 0)  // the first non-finite value of the block, token by token
            for (std::size_t t = 0; t < T; ++t)
                for (std::size_t i = 0; i < d; ++i)
                    if (!std::isfinite(buf[t * d + i]))
                        throw MetricError("clipped_mad: non-finite value in the state of token " + std::to_string(t) +
                                          ", dimension " + std::to_string(j0 + i));
    if (any_fast) {
        for (std::size_t j = 0; j < d; ++j) {
            w.below[j] = w.inner[j] = w.n_med[j] = w.n_mad[j] = 0;
            if (w.exact[j]) {  // empty windows
                w.a[j] = finf, w.b[j] = -finf, w.p1[j] = w.p0[j] = w.q0[j] = w.q1[j] = finf;
                continue;
            }
            const std::uint32_t* h = &hist[j * kHistStride];
            std::size_t bin = 0, cum = 0;
            while (cum + h[bin] <= need) cum += h[bin++];
            const std::size_t ba = bin;  // holds rank `need`
            while (cum + h[bin] <= r) cum += h[bin++];
            const std::size_t bb = bin;  // holds rank r
            // Approximate MAD, in bins: the bins merged outward from the median's by centre distance.
            const double pos = 0.5 * static_cast<double>(ba + bb + 1);
            long up = static_cast<long>(ba + bb + 1) / 2, dn = up - 1;
            std::size_t cum2 = 0;
            double theta = 0;
            while (cum2 <= r) {
                const double du = up < static_cast<long>(kBins) ? static_cast<double>(up) + 0.5 - pos : inf;
                const double dd = dn >= 0 ? pos - static_cast<double>(dn) - 0.5 : inf;
                if (du <= dd) cum2 += h[up++], theta = du;
                else cum2 += h[dn--], theta = dd;
            }
            const double bw = 1.0 / w.sc[j], lo = w.lo[j];
            const double A = lo + (static_cast<double>(ba) - 0.5) * bw, B = lo + (static_cast<double>(bb) + 1.5) * bw;
            // The MAD windows allow for where in [A, B] the median is and for the bins' width.
            const double mid = 0.5 * (A + B), th = theta * bw, mu = 0.5 * (B - A) + 1.5 * bw;
            w.a[j] = static_cast<float>(A);
            w.b[j] = static_cast<float>(B);
            w.p1[j] = static_cast<float>(mid - th - mu);
            w.q1[j] = static_cast<float>(mid + th + mu);
            w.p0[j] = w.q0[j] = static_cast<float>(mid);  // no inner interval …
            if (th > mu) w.p0[j] = static_cast<float>(mid - th + mu), w.q0[j] = static_cast<float>(mid + th - mu);  // … unless room
        }
        const kernels::SelectWindows win{w.a.data(),     w.b.data(),     w.p1.data(),       w.p0.data(),
                                         w.q0.data(),    w.q1.data(),    w.below.data(),    w.inner.data(),
                                         w.n_med.data(), w.n_mad.data(), w.kept_med.data(), w.kept_mad.data(),
                                         kCap};
        kernels::select_windows(buf, T, d, win);
        double* v = w.sel.data();
        for (std::size_t j = 0; j < d; ++j) {
            if (w.exact[j]) continue;
            const std::size_t n_med = w.n_med[j], n_mad = w.n_mad[j];
            bool ok = n_med <= kCap && n_mad <= kCap;
            double med = 0, mad = 0;
            if (ok) {
                std::copy_n(&w.kept_med[j * kCap], n_med, v);
                ok = median_from(v, n_med, w.below[j], T, med);
            }
            // + 0.0 turns a −0 median into +0: which zero the earlier nth_element-only code returned
            // was unspecified, and only the sign of a zero z can depend on it.
            med += 0.0;
            const auto dev = [med](double x) { return std::fabs(x - med); };
            // Exact bounds of the values not kept: every inner value (a float in (p0, q0)) is within db
            // of med; every value below p1 or above q1 (on its side of med) is at least da from it.
            const float p1 = w.p1[j], p0 = w.p0[j], q0 = w.q0[j], q1 = w.q1[j];
            const double db = w.inner[j] ? std::max(dev(std::nextafter(p0, finf)), dev(std::nextafter(q0, -finf))) : -inf;
            const double lo_out = std::nextafter(p1, -finf), hi_out = std::nextafter(q1, finf);
            ok = ok && lo_out <= med && med <= hi_out;
            const double da = std::min(dev(lo_out), dev(hi_out));
            ok = ok && db < da;
            if (ok) {  // deviations below tl: the inner values and kept ones; in [tl, tu]: kept ones only
                const double tl = w.inner[j] ? std::nextafter(db, inf) : 0.0, tu = std::nextafter(da, -inf);
                std::size_t below = w.inner[j], m = 0;
                for (std::size_t i = 0; i < n_mad; ++i) {
                    const double e = dev(w.kept_mad[j * kCap + i]);
                    below += e < tl;
                    v[m] = e;
                    m += !(e < tl) & !(tu < e);
                }
                ok = median_from(v, m, below, T, mad);
            }
            if (ok) {
                center[j] = med;
                scale[j] = kMadScale * mad + kMadEpsilon;
            } else {
                w.exact[j] = 1;
            }
        }
    }
    std::vector<double> col;
    for (std::size_t j = 0; j < d; ++j) {
        if (w.exact[j] != 1) continue;
        col.resize(T);
        for (std::size_t t = 0; t < T; ++t) col[t] = buf[t * d + j];
        std::span<double> v(w.sel.data(), T);
        std::copy(col.begin(), col.end(), v.begin());
        const double med = median_inplace(v) + 0.0;
        for (std::size_t t = 0; t < T; ++t) v[t] = std::fabs(col[t] - med);
        center[j] = med;
        scale[j] = kMadScale * median_inplace(v) + kMadEpsilon;
    }
}

}  // namespace

double MadScaling::apply(const float* h, double* out) const {
    if (scale.size() != center.size() || inv_scale.size() != center.size())
        throw MetricError("clipped_mad: centre, scale and inverse scale differ in length");
    return kernels::scale_clamp_sumsq(h, center.data(), scale.data(), inv_scale.data(), k, out, center.size());
}

MadScaling mad_scaling(const RowsView<float>& states, double k) {
    if (!(k > 0) || !std::isfinite(k)) throw MetricError("clipped_mad: k must be a positive finite number");
    const std::size_t T = states.rows, d = states.cols;
    MadScaling m;
    m.k = k;
    m.center.assign(d, 0.0);
    m.scale.assign(d, kMadEpsilon);
    m.inv_scale.assign(d, 1.0 / kMadEpsilon);
    if (T == 0 || d == 0) return m;
    Block w(T);
    for (std::size_t j0 = 0; j0 < d; j0 += kCols)
        block_scaling(states, j0, std::min(kCols, d - j0), w, &m.center[j0], &m.scale[j0]);
    for (std::size_t j = 0; j < d; ++j) m.inv_scale[j] = 1.0 / m.scale[j];
    return m;
}

std::vector<double> clipped_mad(const RowsView<float>& states, double k) {
    const MadScaling m = mad_scaling(states, k);
    const std::size_t T = states.rows, d = states.cols;
    std::vector<double> out(T * d);
    if (T == 0 || d == 0) return out;
    for (std::size_t t = 0; t < T; ++t) m.apply(states.row(t), &out[t * d]);
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
