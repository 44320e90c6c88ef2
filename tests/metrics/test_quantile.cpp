// Quantiles and summaries (METRICS.md §3): hand-checked cases and equality with numpy's default
// ("linear") quantile on random arrays.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "phasemap/metrics/quantile.hpp"
#include "support/paths.hpp"

using namespace phasemap::metrics;

namespace {
constexpr double nan_ = std::numeric_limits<double>::quiet_NaN();
constexpr double inf_ = std::numeric_limits<double>::infinity();
}  // namespace

TEST(Quantile, OddCountHandChecked) {
    // sorted: 1 2 3 4 5; h = 4q → q1 at h = 1 → 2, median at h = 2 → 3, q3 at h = 3 → 4.
    const std::vector<double> x = {5, 1, 4, 2, 3};
    const Summary s = summarize(x);
    EXPECT_EQ(s.n, 5u);
    EXPECT_DOUBLE_EQ(s.q1.v, 2.0);
    EXPECT_DOUBLE_EQ(s.median.v, 3.0);
    EXPECT_DOUBLE_EQ(s.q3.v, 4.0);
}

TEST(Quantile, EvenCountHandChecked) {
    // sorted: 1 2 4 8; h = 3q. q1: h = 0.75 → 1 + 0.75·(2 − 1) = 1.75; median: h = 1.5 → 2 + 0.5·2 = 3;
    // q3: h = 2.25 → 4 + 0.25·4 = 5.
    const std::vector<double> x = {8, 2, 4, 1};
    const Summary s = summarize(x);
    EXPECT_EQ(s.n, 4u);
    EXPECT_DOUBLE_EQ(s.q1.v, 1.75);
    EXPECT_DOUBLE_EQ(s.median.v, 3.0);
    EXPECT_DOUBLE_EQ(s.q3.v, 5.0);
    std::vector<double> y = x;
    EXPECT_DOUBLE_EQ(median_inplace(y), 3.0);
}

TEST(Quantile, NonFiniteDropped) {
    // Finite values 10 20 30 → median 20, q1 15, q3 25; n counts finite values only.
    const std::vector<double> x = {nan_, 30, inf_, 10, -inf_, 20, nan_};
    const Summary s = summarize(x);
    EXPECT_EQ(s.n, 3u);
    EXPECT_DOUBLE_EQ(s.median.v, 20.0);
    EXPECT_DOUBLE_EQ(s.q1.v, 15.0);
    EXPECT_DOUBLE_EQ(s.q3.v, 25.0);
    EXPECT_DOUBLE_EQ(quantile(x, 1.0).v, 30.0);
    EXPECT_DOUBLE_EQ(quantile(x, 0.0).v, 10.0);
}

TEST(Quantile, SingleValue) {
    const std::vector<double> x = {-4.5};
    const Summary s = summarize(x);
    EXPECT_EQ(s.n, 1u);
    EXPECT_TRUE(s.median.ok());
    EXPECT_EQ(s.median.v, -4.5);
    EXPECT_EQ(s.q1.v, -4.5);
    EXPECT_EQ(s.q3.v, -4.5);
}

TEST(Quantile, EmptyIsMissingWithReason) {
    const Summary s = summarize(std::vector<double>{});
    EXPECT_EQ(s.n, 0u);
    EXPECT_FALSE(s.median.ok());
    EXPECT_FALSE(s.q1.ok());
    EXPECT_FALSE(s.q3.ok());
    EXPECT_NE(s.median.missing_reason.find("no finite"), std::string::npos);
    const Summary s2 = summarize(std::vector<double>{nan_, inf_});
    EXPECT_EQ(s2.n, 0u);
    EXPECT_FALSE(s2.median.ok());
    EXPECT_TRUE(std::isnan(quantile_sorted({}, 0.5)));
}

TEST(Quantile, MedianInplaceMatchesSortedQuantile) {
    std::mt19937_64 rng(7);
    std::normal_distribution<double> nd;
    for (std::size_t n = 1; n < 40; ++n) {
        std::vector<double> x(n);
        for (double& v : x) v = nd(rng);
        std::vector<double> s = x;
        std::sort(s.begin(), s.end());
        EXPECT_EQ(median_inplace(x), quantile_sorted(s, 0.5)) << "n=" << n;
    }
}

// numpy's np.quantile(a[np.isfinite(a)], q) (default method "linear") against ours on random arrays
// of many sizes (including NaN/Inf entries, ties and n = 1), for a set of q values.
TEST(Quantile, MatchesNumpyDefault) {
    const std::string py = "/usr/bin/python3";
    if (!std::filesystem::exists(py)) GTEST_SKIP() << "python3 not installed at " << py;
    const auto probe = pmtest::run_command({py, "-c", "import numpy"});
    if (probe.exit_code != 0) GTEST_SKIP() << "numpy not importable by " << py << ": " << probe.err;

    const std::vector<double> qs = {0.0, 0.025, 0.1, 0.25, 1.0 / 3.0, 0.5, 0.6180339887, 0.75, 0.9, 0.975, 1.0};
    std::mt19937_64 rng(12345);
    std::normal_distribution<double> nd;
    std::uniform_int_distribution<int> len(1, 60), kind(0, 3);
    std::vector<std::vector<double>> arrays;
    for (int a = 0; a < 200; ++a) {
        std::vector<double> x(static_cast<std::size_t>(len(rng)));
        const int k = kind(rng);
        for (double& v : x) {
            v = nd(rng) * std::pow(10.0, k - 1);
            if (k == 3) v = std::round(v / 10.0);  // many ties
        }
        if (a % 5 == 0) x.push_back(nan_);
        if (a % 7 == 0) x.push_back(inf_);
        arrays.push_back(x);
    }
    pmtest::TempDir dir;
    const auto in = dir / "arrays.txt";
    {
        std::ofstream f(in);
        f.precision(17);
        for (const auto& x : arrays) {
            for (double v : x) f << v << ' ';
            f << '\n';
        }
    }
    std::ostringstream qlist;
    qlist.precision(17);
    for (double q : qs) qlist << q << ',';
    const std::string code =
        "import sys, numpy as np\n"
        "qs = np.array([" + qlist.str() + "], dtype=np.float64)\n"
        "for line in open(sys.argv[1]):\n"
        "    a = np.array([float(t) for t in line.split()], dtype=np.float64)\n"
        "    a = a[np.isfinite(a)]\n"
        "    print(' '.join(repr(float(v)) for v in np.quantile(a, qs)))\n";
    const auto r = pmtest::run_command({py, "-c", code, in.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;

    std::istringstream lines(r.out);
    std::string line;
    std::size_t row = 0, compared = 0;
    while (std::getline(lines, line)) {
        ASSERT_LT(row, arrays.size());
        std::istringstream ls(line);
        for (double q : qs) {
            std::string tok;
            ASSERT_TRUE(static_cast<bool>(ls >> tok)) << "row " << row;
            const double expect = std::strtod(tok.c_str(), nullptr);
            const Value got = quantile(arrays[row], q);
            ASSERT_TRUE(got.ok());
            EXPECT_LE(std::fabs(got.v - expect), 1e-12 * std::max(1.0, std::fabs(expect)))
                << "row " << row << " q " << q << " numpy " << tok << " ours " << got.v;
            ++compared;
        }
        ++row;
    }
    EXPECT_EQ(row, arrays.size());
    EXPECT_EQ(compared, arrays.size() * qs.size());
}
