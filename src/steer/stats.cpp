// Bootstrap CIs, CSV reading, text agreement and exact match (include/phasemap/steer/eval.hpp).
#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "phasemap/io/csv.hpp"
#include "phasemap/stats/bootstrap.hpp"
#include "phasemap/steer/eval.hpp"

namespace phasemap::steer {

MeanCi bootstrap_mean(std::span<const double> xs, size_t resamples, uint64_t seed, double level) {
    stats::Rng rng(seed);
    const stats::BootstrapCi b = stats::percentile_bootstrap(xs, resamples, stats::Statistic::mean, rng, level);
    return {b.n, b.estimate, b.ci.lo, b.ci.hi};
}

size_t CsvTable::column(const std::string& name) const {
    for (size_t i = 0; i < header.size(); ++i)
        if (header[i] == name) return i;
    std::string cols;
    for (const auto& h : header) cols += (cols.empty() ? "" : ", ") + h;
    throw std::invalid_argument(fmt::format("'{}' has no column '{}' (columns: {})", source, name, cols));
}

CsvTable read_csv(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::invalid_argument(fmt::format("cannot read CSV file '{}'", path));
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string s = ss.str();
    CsvTable t;
    t.source = path;
    for (auto& row : io::parse_csv(s, path)) {
        if (t.header.empty()) t.header = std::move(row.fields);
        else t.rows.push_back(std::move(row.fields));
    }
    if (t.header.empty()) throw std::invalid_argument(fmt::format("CSV file '{}' is empty", path));
    for (size_t r = 0; r < t.rows.size(); ++r)
        if (t.rows[r].size() != t.header.size())
            throw std::invalid_argument(fmt::format("CSV file '{}' row {} has {} fields, the header {}", path, r + 2, t.rows[r].size(), t.header.size()));
    return t;
}

Agreement token_agreement(std::span<const int32_t> a, std::span<const int32_t> b) {
    Agreement g;
    const size_t n = std::min(a.size(), b.size()), mx = std::max(a.size(), b.size());
    size_t same = 0;
    for (size_t i = 0; i < n; ++i) {
        if (a[i] == b[i]) ++same;
        else if (g.first_divergence < 0) g.first_divergence = int(i);
    }
    if (g.first_divergence < 0 && a.size() != b.size()) g.first_divergence = int(n);
    g.match_rate = mx ? double(same) / double(mx) : 1.0;
    return g;
}

namespace {
std::string normalise(std::string s) {
    for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    auto strip = [](unsigned char c) { return std::isspace(c) || c == '.' || c == '!' || c == '?' || c == ',' || c == '"' || c == '\''; };
    while (!s.empty() && strip(static_cast<unsigned char>(s.back()))) s.pop_back();
    size_t b = 0;
    while (b < s.size() && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    return s.substr(b);
}
}  // namespace

bool exact_match(const std::string& generated, const std::string& answer) {
    std::istringstream in(generated);
    std::string line, first;
    while (std::getline(in, line))
        if (!normalise(line).empty()) { first = normalise(line); break; }
    const std::string a = normalise(answer);
    if (a.empty() || first.size() < a.size() || first.compare(0, a.size(), a) != 0) return false;
    return first.size() == a.size() || !std::isalnum(static_cast<unsigned char>(first[a.size()]));
}

}  // namespace phasemap::steer
