// Result-DB rows as tab-separated text (store::Store::rows), compared field by field: a field is
// equal when its text is, or when both fields are whole decimal numbers within
// rel_tol × max(|a|, |b|, 1) of each other; every other field (ids, token text, labels, JSON) must
// match exactly. For rows whose numbers come from another float path: a committed fixture made on
// another CPU (AVX2 against AVX-512 sums differ by ~1e-7 relative), or the output statistics
// computed in the graph against the host reference.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

namespace pmtest {

inline bool numeric_field(const std::string& f, double& v) {
    if (f.empty()) return false;
    char* end = nullptr;
    v = std::strtod(f.c_str(), &end);
    return end == f.c_str() + f.size() && std::isfinite(v);
}

inline std::vector<std::string> split_tabs(const std::string& row) {
    std::vector<std::string> out;
    size_t at = 0;
    for (size_t tab; (tab = row.find('\t', at)) != std::string::npos; at = tab + 1) out.push_back(row.substr(at, tab - at));
    out.push_back(row.substr(at));
    return out;
}

inline void expect_same_within(const std::vector<std::string>& ref, const std::vector<std::string>& got, double rel_tol,
                               const std::string& what) {
    ASSERT_EQ(ref.size(), got.size()) << what << ": row counts differ";
    for (size_t i = 0; i < ref.size(); ++i) {
        if (ref[i] == got[i]) continue;
        const auto a = split_tabs(ref[i]), b = split_tabs(got[i]);
        ASSERT_EQ(a.size(), b.size()) << what << ": row " << i << " has another number of fields\n" << ref[i] << "\n" << got[i];
        for (size_t k = 0; k < a.size(); ++k) {
            if (a[k] == b[k]) continue;
            double x = 0, y = 0;
            const bool num = numeric_field(a[k], x) && numeric_field(b[k], y);
            ASSERT_TRUE(num) << what << ": row " << i << " field " << k << ": '" << a[k] << "' vs '" << b[k] << "'";
            const double scale = std::max({std::fabs(x), std::fabs(y), 1.0});
            ASSERT_LE(std::fabs(x - y), rel_tol * scale)
                << what << ": row " << i << " field " << k << ": " << a[k] << " vs " << b[k] << " (tolerance " << rel_tol << ")";
        }
    }
}

}  // namespace pmtest
