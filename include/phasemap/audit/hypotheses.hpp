// Section 5: the falsification registry. A TOML file declares hypotheses about the panel; each is
// evaluated on a declared small sub-panel and on the full panel and gets a verdict
// SURVIVED / FALSIFIED / INCONCLUSIVE with its statistic, p-value or interval. The file format and
// the verdict rules are in docs/audit.md; examples/limen_hypotheses.toml holds LIMEN's claims.
//
// Owns: parsed hypotheses and results are plain values. Throws: std::invalid_argument from the parser
// (below); evaluation reports INCONCLUSIVE instead of throwing.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "phasemap/audit/audit.hpp"

namespace phasemap::audit {

enum class Verdict { FALSIFIED, INCONCLUSIVE, SURVIVED };   // report order
std::string_view to_string(Verdict v);

// Which runs form a (sub-)panel; an empty list means "no restriction".
struct SubPanel {
    std::vector<std::string> models, families, categories;
    std::vector<double> temperatures;
    bool empty() const { return models.empty() && families.empty() && categories.empty() && temperatures.empty(); }
};
// The panel restricted to the sub-panel (models kept when they have a kept run or are listed).
PanelTable restrict_panel(const PanelTable& p, const SubPanel& s);

struct Hypothesis {
    std::string id, claim;
    // "compare":        metric of group a <direction> group b (test: mann_whitney | welch_t | permutation)
    // "variance_share": factor (model | family | category) explains ≥ min_share and/or ≤ max_share
    // "regime":         model's mean ratio_norm lies in `regime`
    // "ranking_stable": model ranking Kendall τ-b ≥ min_tau between every pair of levels of `across`
    // "correlation":    Pearson r of model-level metric with a covariate (or a run metric) ≥ min_r / ≤ max_r
    std::string type;
    std::string metric = "ratio_norm";
    double alpha = 0.05;
    // compare
    std::string group_by = "family";         // family | model
    std::vector<std::string> a, b;           // group names on each side
    std::string direction = "less";          // less: a < b; greater: a > b
    std::string test = "mann_whitney";
    std::string unit = "run";                // run | model (model means)
    // variance_share
    std::string factor = "model";
    std::optional<double> min_share, max_share;
    // regime
    std::string model, regime;
    // ranking_stable
    std::string across = "temperature";      // temperature | n_predict
    double min_tau = 0.7;
    // correlation
    std::string covariate;
    std::optional<double> min_r, max_r;
    std::optional<SubPanel> subpanel;        // overrides the file's [subpanel]
};

struct HypothesisFile {
    SubPanel subpanel;                       // the declared small sub-panel
    std::vector<Hypothesis> hypotheses;
};
// Parses the TOML text; throws std::invalid_argument naming `source` and the offending entry.
HypothesisFile parse_hypotheses(std::string_view toml, const std::string& source = "hypotheses");
// Reads and parses a file (the only file the audit library reads).
HypothesisFile load_hypotheses(const std::filesystem::path& path);

struct Evaluation {
    Verdict verdict = Verdict::INCONCLUSIVE;
    std::string statistic_name;
    double statistic = stats::kNaN;
    Interval ci;
    double p = stats::kNaN;
    std::size_t n = 0;                       // runs or models the statistic used
    std::string detail;                      // why this verdict (or why no data)
    std::string interval_reflects;           // what the interval's variation is (e.g. run-level noise given the models)
};
struct HypothesisResult {
    Hypothesis hypothesis;
    Evaluation subpanel, full;
};
struct Registry : SectionResult {
    std::vector<HypothesisResult> results;   // FALSIFIED first (full-panel verdict), then INCONCLUSIVE, SURVIVED
};
Evaluation evaluate(const Hypothesis& h, const PanelTable& p, const Options& o, std::uint64_t stream);
Registry falsification_registry(const PanelTable& p, const HypothesisFile& file, const Options& o);
json to_json(const Registry& r);
std::string to_table(const Registry& r);

}  // namespace phasemap::audit
