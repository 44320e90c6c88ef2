// Helpers shared by the audit sections (private to src/audit).
#pragma once
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "phasemap/audit/audit.hpp"

namespace phasemap::audit::detail {

// Random streams, one per statistic, derived from Options::seed.
enum Stream : std::uint64_t {
    kRegime = kRegimeStream, kNormEta, kNormEtaPerm, kNormKappa, kVarBoot, kVarPermA, kVarPermB, kVarPermAB,
    kTopoBoot, kTopoPerm, kCycleBoot, kRankBoot, kCorrBoot, kCorrPerm, kSplit, kVariantBoot,
    kVariantPerm, kCovPerm, kControlPerm, kControlBoot, kHypothesis = 100,
};
std::mt19937_64 rng_for(const Options& o, std::uint64_t stream);

// The normalisation mode the sections use: Options::norm, or the mode most runs have (ties: the
// alphabetically first).
std::string resolve_norm(const PanelTable& p, const Options& o);
std::vector<const PanelRun*> runs_for(const PanelTable& p, const std::string& norm);
// The run metric `name`, NaN when absent.
double metric_of(const PanelRun& r, const std::string& name);
// A model's declared family; its own label when it declares none.
std::string family_of(const PanelTable& p, const std::string& model);
std::string regime_label(double ratio_norm, const metrics::RegimeCuts& cuts);

// Dense integer codes of string labels (sorted order) and the names.
struct Codes {
    std::vector<std::string> names;
    std::vector<int> code;
};
Codes encode(const std::vector<std::string>& labels);

// Bootstrap of the mean of xs: estimate and percentile interval.
Estimate bootstrap_mean(const std::vector<double>& xs, const Options& o, std::mt19937_64& rng);

// JSON helpers: NaN / infinite → null.
json num(double v);
json interval(const Interval& i);
json estimate(const Estimate& e);

// Text formatting.
std::string f(double v);            // 4 significant digits, "–" for NaN
std::string ci(const Interval& i);  // "[lo, hi]"
class TextTable {
public:
    explicit TextTable(std::vector<std::string> headers) : headers_(std::move(headers)) {}
    void row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
    std::string str() const;
    bool empty() const { return rows_.empty(); }

private:
    std::vector<std::string> headers_;
    std::vector<std::vector<std::string>> rows_;
};
std::string heading(const std::string& title, const SectionResult& r);

}  // namespace phasemap::audit::detail
