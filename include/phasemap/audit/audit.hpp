// Panel audits (issue 5): nine sections over a PanelTable, each returning a plain struct, a JSON
// representation (nlohmann) and a printable table. Every section runs on its own and reports
// "not enough data" through `reason` instead of throwing, so one empty section never stops the
// others. Definitions and defaults are documented in docs/audit.md. The from_json of every section
// struct and the whole `phasemap audit --json` document (AuditResult) are in audit/result.hpp.
//
// Owns: nothing kept; sections read the PanelTable during the call and return plain structs.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <Eigen/Dense>
#include <nlohmann/json.hpp>

#include "phasemap/stats/stats.hpp"
#include "phasemap/metrics/token_axis.hpp"
#include "phasemap/metrics/panel_table.hpp"

namespace phasemap::audit {

using json = nlohmann::json;
using stats::Interval;

// The random stream of the regime section (Options::seed through stats::derive_seed): one generator
// for the models in label order, then the model × category cells. `phasemap report` draws its
// per-model and per-cell median intervals from the same stream in the same order.
inline constexpr std::uint64_t kRegimeStream = 1;

struct Options {
    std::string metric = "ratio_norm";   // run metric of the variance decomposition and topology
    std::string factor = "model";        // factor A of the variance decomposition: "model" or "family"
    std::string norm;                    // normalisation mode the sections use ("" = the panel's most common)
    std::size_t bootstrap = 1000;        // bootstrap resamples (all sections)
    std::size_t reml_bootstrap = 200;    // bootstrap resamples of the REML components (cubic cost in cells)
    std::size_t permutations = 1000;     // permutation resamples (every effect)
    std::uint64_t seed = 20250101;       // one seed; each statistic derives its own stream
    double level = 0.95;                 // confidence level of every interval
    double robust_share = 0.95;          // topology: MNN share that makes a pair "robust"
    double train_fraction = 0.5;         // collapse predictor: share of runs in the train split
    double collapse_threshold = 0.001;   // METRICS.md §2.6 published late_ct threshold (evaluated too)
    metrics::RegimeCuts cuts{};          // §2.7 cut-points
    // Throws std::invalid_argument for values out of range.
    void validate() const;
};

// ------------------------------------------------------------------ statistical units
// The runs a section counts (docs/audit.md, "Dependence"). At temperature 0 decoding is greedy and
// the seed does not enter, so runs of one model, prompt and setting that differ only in the seed
// and produced the same generation (same token ids — their digest — where the store has them, else
// the same text; and the same length) are one measurement: the first (lowest seed) is kept, the
// others are merged into it. A run whose generation is a prefix of a run of the
// same stream (same model, prompt, temperature, seed when sampling) with a larger token budget is
// that run measured at a shorter length: the pooled analyses keep the longest only, the
// comparisons between budgets keep each length. Runs without a stored text are never merged.
struct RunUnits {
    std::vector<const PanelRun*> runs;    // the distinct units, in panel order
    std::size_t total = 0;                // runs of the mode(s) before merging
    std::size_t merged_identical = 0;     // temperature-0 runs merged into an identical generation
    std::size_t nested_budget = 0;        // runs analysed through a longer-budget run of the same stream
};
// `norm`: the runs of that mode; `all_modes`: every mode (norm ignored). `keep_budgets`: keep the
// nested shorter-budget runs (identical generations are merged either way).
RunUnits distinct_runs(const PanelTable& p, const std::string& norm, bool keep_budgets = false, bool all_modes = false);
json to_json(const RunUnits& u);

// What every section result shares: empty `reason` when the section ran.
struct SectionResult {
    std::string reason;   // "not enough data" message when the section could not run
    std::string norm;     // normalisation mode of the runs used
    bool ok() const { return reason.empty(); }
};

// A point estimate with its bootstrap interval.
struct Estimate {
    double value = stats::kNaN;
    Interval ci;
    std::size_t n = 0;
};

// ------------------------------------------------------------------ 1. regime table
struct RegimeRow {
    std::string model;
    std::string category;   // "" for the model-level row
    std::size_t n = 0;      // runs with a finite ratio_norm
    double mean = stats::kNaN, median = stats::kNaN;
    Interval ci;            // bootstrap percentile interval of the mean
    std::string label;      // regime of the mean (§2.7 cut-points)
    double label_share = stats::kNaN;   // share of bootstrap means giving `label`
};
struct RegimeTable : SectionResult {
    std::vector<RegimeRow> models, cells;
};
RegimeTable regime_table(const PanelTable& p, const Options& o);

// ------------------------------------------------------------------ 2. normalisation sensitivity
struct NormModeStats {
    std::string mode;
    std::size_t runs = 0, models = 0;
    double eta2 = stats::kNaN;            // η² of ratio_norm by model
    Interval eta2_ci;                     // bootstrap (within model)
    double eta2_perm_p = stats::kNaN;     // permutation of model labels
    stats::KruskalWallis kw;              // ratio_norm by model
};
struct NormAgreement {
    std::string mode_a, mode_b;
    std::size_t pairs = 0;                // runs present in both modes with both labels defined
    double agreement = stats::kNaN;       // share of identical regime labels
    double kappa = stats::kNaN;           // Cohen's κ of the labels
    Interval kappa_ci;                    // bootstrap over paired runs
};
struct NormSensitivity : SectionResult {
    std::vector<NormModeStats> modes;
    std::vector<NormAgreement> agreement;
    std::string agreement_reason;         // why no κ (e.g. one mode only)
    std::string modes_reason;             // why no η² / Kruskal–Wallis per mode (e.g. a single model)
};
NormSensitivity normalisation_sensitivity(const PanelTable& p, const Options& o);

// ------------------------------------------------------------------ 3. variance decomposition
struct VarianceDecomposition : SectionResult {
    std::string metric, factor;
    std::size_t n = 0, levels_a = 0, levels_b = 0;
    stats::AnovaTable anova;
    std::vector<Interval> type1_ci, type2_ci;   // bootstrap intervals of the shares, per term
    std::vector<double> type2_perm_p;           // permutation p of each effect's type-II share
    std::vector<std::string> reml_terms;        // factor, category, [factor:category], Residual
    stats::Reml reml;
    std::vector<double> reml_share;             // σ²_k / Σ σ²
    std::vector<Interval> reml_ci, reml_share_ci;
    std::string reml_reason;
};
VarianceDecomposition variance_decomposition(const PanelTable& p, const Options& o);

// ------------------------------------------------------------------ 4. topology
struct PairShare {
    std::string a, b;
    double share = 0;          // bootstrap resamples in which a and b are mutual nearest neighbours
    bool robust = false;       // share ≥ Options::robust_share
    bool same_family = false;
};
struct Topology : SectionResult {
    std::string metric;
    std::vector<std::string> models, categories, families;
    Eigen::MatrixXd signatures;                 // models × categories, standardised per category
    Eigen::MatrixXd distances;                  // Euclidean
    std::vector<stats::Merge> merges;           // average linkage
    std::vector<std::pair<std::string, std::string>> mnn;   // on the full data
    std::vector<PairShare> pairs;               // every pair that was MNN at least once, by share
    std::size_t robust_pairs = 0;
    double fragmentation = stats::kNaN;         // 1 − 2·robust_pairs / models
    double family_nn_share = stats::kNaN;       // models whose nearest neighbour shares their family
    std::vector<int> clusters;                  // dendrogram cut into k = number of declared families
    double ari = stats::kNaN, ari_perm_p = stats::kNaN;
    std::string ari_reason;
};
Topology topology(const PanelTable& p, const Options& o);

// ------------------------------------------------------------------ 6. cycles
inline constexpr std::array<const char*, 4> kStates = {"COLLAPSE", "RIVALRY", "DIFFUSE", "STEADY"};
struct CycleRow {
    std::string model;
    std::size_t runs = 0;
    double episodes = stats::kNaN;              // Σ collapse_episodes (NaN when not in the panel)
    Estimate exit_rate, reopening_rate;         // episode-weighted when collapse_episodes is known
    std::array<Estimate, 4> state_rates;        // mean per-run rates, kStates order
    std::optional<std::array<std::array<double, 4>, 4>> transitions;   // summed counts, row-normalised
    std::array<Estimate, 4> dwell_mean;         // mean of the runs' dwell_mean_<STATE> (when present)
};
struct Cycles : SectionResult {
    std::vector<CycleRow> models;
    double pooled_reopening = stats::kNaN;      // over every episode of the panel
    Interval pooled_reopening_ci;
    double pooled_episodes = stats::kNaN;
    std::string transitions_reason, dwell_reason;
};
Cycles cycles(const PanelTable& p, const Options& o);

// ------------------------------------------------------------------ 7. robustness
struct RankingStability {
    std::string factor;                         // "temperature" or "n_predict"
    std::string level_a, level_b;
    stats::KendallTau tau;                      // model means at level a vs level b
    Interval ci;                                // bootstrap over runs
};
struct CorrelationResult {
    std::string x, y, unit;                     // unit: "run" or "model"
    stats::Correlation pearson, spearman;       // Fisher-z intervals
    Interval pearson_boot, spearman_boot;       // bootstrap percentile intervals
    double perm_p = stats::kNaN;                // permutation of y, |Pearson r|
};
struct CollapsePredictor {
    std::string label_definition;
    std::size_t train = 0, test = 0, train_positive = 0, test_positive = 0;
    double threshold = stats::kNaN;             // fitted late_ct threshold (collapse when late_ct < t)
    // The printed rule: "collapsed when late_ct < t", or "no rule better than the majority class"
    // when the fitted threshold puts every training run in one class or is no more accurate on the
    // training split than predicting its majority class (threshold then NaN).
    std::string rule, entropy_rule;
    double train_accuracy = stats::kNaN, test_accuracy = stats::kNaN, test_auc = stats::kNaN;
    double fixed_threshold_test_accuracy = stats::kNaN;   // Options::collapse_threshold on the test split
    std::string entropy_metric;
    double entropy_threshold = stats::kNaN;     // collapse when entropy < t
    double entropy_test_accuracy = stats::kNaN, entropy_test_auc = stats::kNaN;
    std::string entropy_reason;
    // The empirical ROC curves on the test split (stats::roc_curve of −late_ct and −entropy: lower
    // means collapsed); their trapezoid areas are test_auc and entropy_test_auc.
    std::vector<stats::RocPoint> test_roc, entropy_test_roc;
    double majority_test_accuracy = stats::kNaN;  // always predicting the train majority class
};
struct Robustness : SectionResult {
    std::vector<RankingStability> temperature, budget;
    std::string temperature_reason, budget_reason;
    std::vector<CorrelationResult> perplexity;
    std::string perplexity_reason;
    CollapsePredictor predictor;
    std::string predictor_reason;
};
Robustness robustness(const PanelTable& p, const Options& o);
// Kendall τ-b of the model means of Options::metric between every pair of levels of `factor`
// ("temperature" or "n_predict"); empty with `reason` set when there is nothing to compare.
std::vector<RankingStability> ranking_stability(const PanelTable& p, const Options& o, const std::string& factor,
                                                std::string& reason);
// The collapse label of a generated text (docs/audit.md): fewer than 4 words, or fewer than half of
// its word trigrams distinct.
bool text_collapsed(const std::string& text);

// ------------------------------------------------------------------ 8. variants and covariates
struct VariantRow {
    std::string model, base;
    std::size_t n_variant = 0, n_base = 0;
    std::string label_variant, label_base;
    std::size_t categories = 0;                 // categories with both
    double category_agreement = stats::kNaN;    // share of categories with the same cell label
    double category_kappa = stats::kNaN;
    // "paired": the mean of the differences over runs matched by (category, prompt, temperature,
    // n_predict, seed when sampling), paired bootstrap over the pairs, sign-flip permutation p;
    // "unpaired" (fewer than 2 matched pairs): mean(variant) − mean(base), independent bootstrap,
    // label permutation p.
    std::string test;
    std::size_t pairs = 0;                      // matched pairs (paired test)
    double delta = stats::kNaN;                 // Δ ratio_norm, variant − base
    Interval delta_ci;
    double perm_p = stats::kNaN;                // two-sided
    std::string p_method;                       // "exact sign-flip enumeration", "random sign flips", "label permutation"
};
struct CovariateRow {
    std::string covariate;
    stats::Correlation pearson, spearman;       // model mean ratio_norm vs covariate
    double perm_p = stats::kNaN;
};
struct Variants : SectionResult {
    std::vector<VariantRow> variants;
    std::string variant_reason;
    std::vector<CovariateRow> covariates;
    std::string covariate_reason;
};
Variants variants(const PanelTable& p, const Options& o);

// ------------------------------------------------------------------ 9. controls
struct Effect {
    std::string effect;           // e.g. "model | category on ratio_norm"
    std::string statistic;        // name of the statistic
    double value = stats::kNaN;
    double p = stats::kNaN;       // permutation p-value
    std::size_t permutations = 0;
    std::string scheme;           // what was permuted
};
struct ShuffleBaseline {
    std::string model, key;       // key: the run metric holding the run's shuffled-order p-value
    std::size_t runs = 0;
    double median_p = stats::kNaN;
    Estimate share_significant;   // share of runs with p < 0.05
};
struct Controls : SectionResult {
    std::vector<Effect> effects;
    std::vector<ShuffleBaseline> baselines;
    std::string baseline_reason;
};
Controls controls(const PanelTable& p, const Options& o);

// ------------------------------------------------------------------ output
json to_json(const RegimeTable& r);
json to_json(const NormSensitivity& r);
json to_json(const VarianceDecomposition& r);
json to_json(const Topology& r);
json to_json(const Cycles& r);
json to_json(const Robustness& r);
json to_json(const Variants& r);
json to_json(const Controls& r);
std::string to_table(const RegimeTable& r);
std::string to_table(const NormSensitivity& r);
std::string to_table(const VarianceDecomposition& r);
std::string to_table(const Topology& r);
std::string to_table(const Cycles& r);
std::string to_table(const Robustness& r);
std::string to_table(const Variants& r);
std::string to_table(const Controls& r);

}  // namespace phasemap::audit
