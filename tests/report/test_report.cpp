// `phasemap report`: the numerics behind the page, and the page itself opened in headless
// Chromium (no network): every figure renders with marks, no console errors, sections without
// data say so, a 1,000-run panel stays under 10 MB, and the SVG/PNG export writes every figure.
// Chromium is installed by scripts/deps.sh; without it the browser tests fail, unless
// PHASEMAP_NO_BROWSER=1 is set (then they skip, saying why).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <tuple>
#include <cstdlib>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "phasemap/audit/audit.hpp"
#include "phasemap/audit/result.hpp"
#include "phasemap/report/report.hpp"
#include "phasemap/stats/cluster.hpp"
#include "phasemap/steer/eval.hpp"
#include "phasemap/steer/result.hpp"
#include "support/paths.hpp"
#ifdef PHASEMAP_REPORT_DB
#include "phasemap/metrics/analyze.hpp"
#include "phasemap/store/store.hpp"
#endif

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using pmtest::run_command;
using pmtest::run_phasemap;

fs::path out_dir() {
    fs::path d = PHASEMAP_REPORT_TEST_OUT;
    fs::create_directories(d);
    return d;
}

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

void write_json(const fs::path& p, const json& j) {
    std::ofstream f(p);
    f << j.dump();
}

// ------------------------------------------------------------------ synthetic inputs
const char* kStates[] = {"COLLAPSE", "RIVALRY", "DIFFUSE", "STEADY"};

// A panel in the JSON layout of PanelTable (panel_table.hpp).
json synthetic_panel(size_t n_models, size_t n_categories, size_t runs_per_cell, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> noise(0.0, 0.25);
    json models = json::array(), runs = json::array();
    const char* families[] = {"llama", "qwen", "gemma", "gpt2"};
    for (size_t m = 0; m < n_models; ++m) {
        const std::string label = "model-" + std::to_string(m);
        models.push_back({{"label", label}, {"family", families[m % 4]}, {"architecture", families[m % 4]},
                          {"sha256", std::string(64, "0123456789abcdef"[m % 16])},
                          {"variant_of", m == 1 ? json("model-0") : json(nullptr)},
                          {"covariates", {{"size_b", 0.5 * double(m + 1)}}}});
        const double centre = std::log(1.6 + 0.7 * double(m));
        for (size_t c = 0; c < n_categories; ++c)
            for (size_t r = 0; r < runs_per_cell; ++r) {
                const double rn = std::exp(centre + 0.1 * double(c) + noise(rng));
                json metrics = {{"ratio_norm", rn}, {"late_ct", 0.2 + 0.01 * double(r)}, {"collapse_rate", 0.3},
                                {"median_mean_speed", 5.0 + double(m) + noise(rng)},
                                {"median_mean_turning_angle_rad", 1.2 + 0.05 * double(m) + 0.1 * noise(rng)},
                                {"median_tortuosity", 1.5 + 0.1 * noise(rng)}, {"median_speed_cv", 0.5 + 0.05 * noise(rng)}};
                runs.push_back({{"run_id", label + "-c" + std::to_string(c) + "-r" + std::to_string(r)},
                                {"model", label}, {"category", "cat-" + std::to_string(c)}, {"prompt", "p"},
                                {"temperature", r % 2 ? 0.7 : 0.0}, {"n_predict", 64}, {"seed", r}, {"n_generated", 64},
                                {"text", "once upon a time"}, {"metrics", metrics}, {"regime", ""}, {"norm", "raw"}});
            }
    }
    return {{"models", models}, {"runs", runs}};
}

// A per-run summary in the layout `phasemap analyze --json` writes (the fields the report reads).
json synthetic_summary(const std::string& model, size_t T, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    json delta = json::array(), curv = json::array(), ct = json::array(), tok = json::array(), st = json::array();
    double mx = 0, sum = 0;
    size_t n = 0;
    for (size_t t = 0; t < T; ++t) {
        const double d = 0.5 + 0.5 * u(rng), c = 0.3 + u(rng) * (t % 97 == 50 ? 4.0 : 1.0);
        delta.push_back(t >= 1 ? json(d) : json(nullptr));
        curv.push_back(t >= 2 ? json(c) : json(nullptr));
        if (t >= 2) ct.push_back(d * c), mx = std::max(mx, d * c), sum += d * c, ++n;
        else ct.push_back(nullptr);
        tok.push_back(t % 7 == 3 ? " <b>&\"tag\"</b>" : " tok" + std::to_string(t));
        st.push_back(kStates[(t / 5) % 4]);
    }
    const double rn = n ? mx / (sum / double(n)) : NAN;
    json summary = json::object();
    for (const char* m : {"mean_speed", "speed_cv", "mean_turning_angle_rad", "tortuosity", "path_length"})
        summary[std::string("trajectory.") + m] = {{"n", T}, {"median", 1.0 + u(rng)}, {"q1", 0.5}, {"q3", 1.5}};
    return {{"schema_version", "phasemap.summary.v1"}, {"model_id", model}, {"model_sha256", std::string(64, 'a')},
            {"input", {{"generated_tokens", T}}}, {"token_axis", {{"ratio_norm", rn}, {"regime", ""}}},
            {"summary", summary},
            {"per_token", {{"delta_t", delta}, {"curvature_t", curv}, {"ct_t", ct}, {"token", tok}, {"output_state", st}}},
            {"options", {{"regime_cuts", "1.985,2.945,3.695"}, {"norm", "raw"}}},
            {"provenance", {{"phasemap_version", "test"}, {"model", {{"name", model}, {"architecture", "llama"}}}}}};
}

// A hand-made audit (the audit library's types, written through its to_json): regime,
// normalisation, variance, topology, hypotheses, cycles, and robustness that did not run.
phasemap::audit::AuditResult synthetic_audit(size_t n_models) {
    namespace pa = phasemap::audit;
    pa::AuditResult a;
    a.phasemap_version = "test";
    a.source = "panel.json";
    a.panel_models = n_models;
    a.panel_runs = 8 * n_models;
    auto add = [&](const std::string& name, pa::SectionData d) {
        pa::AuditSection s;
        s.name = name;
        s.result = std::move(d);
        a.sections.push_back(std::move(s));
    };
    pa::RegimeTable reg;
    reg.norm = "raw";
    reg.models.push_back({.model = "model-0", .n = 8, .mean = 1.7, .label = "UNDERACTIVE"});
    add("regime", reg);
    pa::NormSensitivity ns;
    ns.modes.push_back({.mode = "raw", .runs = 48, .eta2 = 0.4, .eta2_ci = {0.3, 0.5}});
    ns.agreement_reason = "one normalisation mode only";
    add("normalisation", ns);
    pa::VarianceDecomposition v;
    v.norm = "raw";
    v.metric = "ratio_norm";
    v.factor = "model";
    v.anova.type2 = {{.term = "model", .share = 0.55}, {.term = "category", .share = 0.1}, {.term = "Residual", .share = 0.35}};
    v.type2_ci = {{0.45, 0.65}, {0.05, 0.15}};
    v.reml_terms = {"model", "Residual"};
    v.reml.sigma2 = {0.6, 0.4};
    v.reml.converged = true;
    v.reml_share = {0.6, 0.4};
    v.reml_share_ci = {{0.4, 0.7}, {0.3, 0.6}};
    add("variance", v);
    pa::Topology t;
    t.norm = "raw";
    t.metric = "ratio_norm";
    t.signatures = Eigen::MatrixXd::Zero(Eigen::Index(n_models), 1);
    t.distances.resize(Eigen::Index(n_models), Eigen::Index(n_models));
    pa::Cycles cyc;
    cyc.norm = "raw";
    for (size_t i = 0; i < n_models; ++i) {
        t.models.push_back("model-" + std::to_string(i));
        for (size_t j = 0; j < n_models; ++j)
            t.distances(Eigen::Index(i), Eigen::Index(j)) = std::abs(double(i) - double(j)) * (1.0 + 0.1 * double((i + j) % 3));
        pa::CycleRow m;
        m.model = "model-" + std::to_string(i);
        m.runs = 8;
        m.episodes = 20;
        m.exit_rate = {0.6, {0.5, 0.7}, 8};
        m.reopening_rate = {0.8 - 0.05 * double(i), {0.7, 0.9}, 8};
        cyc.models.push_back(m);
    }
    for (size_t i = 0; i + 1 < n_models; i += 2)
        t.pairs.push_back({t.models[i], t.models[i + 1], i == 0 ? 0.97 : 0.6, i == 0, false});
    t.robust_pairs = 1;
    t.fragmentation = 0.5;
    add("topology", t);
    pa::Registry h;
    h.norm = "raw";
    auto hyp = [](const std::string& id, const std::string& claim, pa::Verdict full, pa::Verdict sub, double stat, pa::Interval ci, double p) {
        pa::HypothesisResult r;
        r.hypothesis.id = id;
        r.hypothesis.claim = claim;
        r.hypothesis.type = "t";
        r.full = {.verdict = full, .statistic = stat, .ci = ci, .p = p, .n = 48};
        r.subpanel.verdict = sub;
        return r;
    };
    h.results = {hyp("H-survive", "it holds", pa::Verdict::SURVIVED, pa::Verdict::SURVIVED, 0.2, {0.1, 0.3}, 0.01),
                 hyp("H-falsified", "it breaks", pa::Verdict::FALSIFIED, pa::Verdict::INCONCLUSIVE, -0.4, {-0.5, -0.3}, 0.001)};
    add("hypotheses", h);
    add("cycles", cyc);
    pa::Robustness rob;
    rob.reason = "one temperature only";
    add("robustness", rob);
    return a;
}

// Per-arm tables of a control-audit / monitor-eval result (arm → measure → MeanCi; the flat
// summary rows follow from them, steer::summary_rows).
std::map<std::string, phasemap::steer::MeasureTable> arm_tables(const std::vector<std::string>& arms,
                                                               const std::vector<std::string>& measures, bool deltas, double shift) {
    std::map<std::string, phasemap::steer::MeasureTable> t;
    for (size_t a = 0; a < arms.size(); ++a)
        for (const auto& m : measures)
            for (bool delta : {false, true}) {
                if (delta && (!deltas || a == 0)) continue;
                const double v = delta ? shift / double(a) : 0.4 + 0.1 * double(a);
                t[arms[a]][(delta ? "delta_" : "") + m] = {5, v, v - 0.05, v + 0.05};
            }
    return t;
}

phasemap::steer::ControlAuditResult synthetic_control() {
    phasemap::steer::ControlAuditResult r;
    r.arms = {"baseline", "intervened", "random", "zero"};
    r.summary = arm_tables(r.arms, {"ratio_norm", "mean_ct", "late_ct", "mean_entropy", "accuracy"}, true, 0.3);
    phasemap::steer::TwinPrompt p{"Once upon a time", {}};
    for (const auto& arm : r.arms) {
        phasemap::steer::TwinRun t{arm == "baseline" ? "a" : "b", 12, {}, 1.0, -1};
        for (const char* k : phasemap::steer::kDynamicsMeasures) t.dynamics[k] = arm == "baseline" ? 0.4 : 0.7;
        p.arms[arm] = t;
    }
    r.per_prompt = {p};
    r.headline = "intervened: …";
    return r;
}

phasemap::steer::MonitorEvalResult synthetic_monitor() {
    phasemap::steer::MonitorEvalResult r;
    r.arms = {"baseline", "monitor_only", "guard_only", "monitor_guard"};
    r.n = 5;
    r.summary = arm_tables(r.arms, {"accuracy", "trigger_rate", "insertion_rate"}, false, 0);
    phasemap::steer::GuardedPrompt p{"q", "a", {}};
    for (const auto& arm : r.arms) p.arms[arm] = {};
    r.per_prompt = {p};
    return r;
}

struct Status {
    json j;
    std::string dom;
};

// ------------------------------------------------------------------ the browser
std::string find_chromium() {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path ? path : "/usr/bin");
    std::vector<std::string> ds;
    for (std::string d; std::getline(dirs, d, ':');) ds.push_back(d);
    for (const char* name : {"chromium", "chromium-browser", "google-chrome"})
        for (const auto& d : ds) {
            const fs::path p = fs::path(d) / name;
            if (!d.empty() && ::access(p.c_str(), X_OK) == 0) return p.string();
        }
    return "";
}

#define REQUIRE_BROWSER(chrome)                                                                          \
    const std::string chrome = find_chromium();                                                          \
    if (chrome.empty()) {                                                                                \
        const char* nb = std::getenv("PHASEMAP_NO_BROWSER");                                             \
        if (nb && std::string(nb) == "1") GTEST_SKIP() << "PHASEMAP_NO_BROWSER=1: headless Chromium not used"; \
        FAIL() << "chromium not found (scripts/deps.sh installs Debian's chromium; "                    \
                  "set PHASEMAP_NO_BROWSER=1 to skip the browser checks)";                               \
    }

std::vector<std::string> chrome_flags(const std::string& chrome, const fs::path& profile) {
    return {chrome, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
            "--user-data-dir=" + profile.string(), "--virtual-time-budget=30000"};
}

std::string unescape_html(std::string s) {
    for (auto [from, to] : {std::pair{"&quot;", "\""}, {"&lt;", "<"}, {"&gt;", ">"}, {"&#39;", "'"}, {"&amp;", "&"}}) {
        for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + std::strlen(to))) s.replace(p, std::strlen(from), to);
    }
    return s;
}

// Opens the page from file:// and returns #pm-status (and the DOM); saves a screenshot if asked.
Status open_page(const std::string& chrome, const fs::path& html, const fs::path& screenshot = {}) {
    pmtest::TempDir profile;
    auto args = chrome_flags(chrome, profile.path);
    args.push_back("--dump-dom");
    args.push_back("file://" + fs::absolute(html).string());
    auto r = run_command(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    Status s;
    s.dom = r.out;
    std::smatch m;
    static const std::regex re(R"re(<pre id="pm-status">([^<]*)</pre>)re");
    if (!std::regex_search(s.dom, m, re)) {
        ADD_FAILURE() << "no #pm-status in the dumped DOM:\n" << s.dom.substr(0, 2000) << "\nstderr:\n" << r.err;
        return s;
    }
    s.j = json::parse(unescape_html(m[1].str()));
    if (!screenshot.empty()) {
        pmtest::TempDir profile2;
        auto a2 = chrome_flags(chrome, profile2.path);
        a2.push_back("--hide-scrollbars");
        a2.push_back("--window-size=1280,3400");
        a2.push_back("--screenshot=" + screenshot.string());
        a2.push_back("file://" + fs::absolute(html).string());
        auto r2 = run_command(a2);
        EXPECT_EQ(r2.exit_code, 0) << r2.err;
        EXPECT_TRUE(fs::exists(screenshot) && fs::file_size(screenshot) > 10000) << screenshot;
    }
    return s;
}

void expect_rendered(const Status& s, size_t expected) {
    ASSERT_TRUE(s.j.is_object());
    EXPECT_EQ(s.j["state"], "done") << s.j.dump();
    EXPECT_EQ(s.j["errors"].size(), 0u) << s.j["errors"].dump(1);
    EXPECT_EQ(s.j["failed"].size(), 0u) << s.j["failed"].dump(1);
    EXPECT_EQ(s.j["empty"].size(), 0u) << s.j["empty"].dump(1);
    EXPECT_EQ(s.j["expected"].get<size_t>(), expected) << s.j.dump();
    EXPECT_EQ(s.j["rendered"].get<size_t>(), expected) << s.j.dump();
    // One SVG per figure in the DOM.
    size_t svgs = 0;
    for (size_t p = s.dom.find("<svg"); p != std::string::npos; p = s.dom.find("<svg", p + 4)) ++svgs;
    EXPECT_GE(svgs, expected);
}

// The HTML references nothing outside itself.
void expect_self_contained(const std::string& html) {
    EXPECT_EQ(html.find("<script src"), std::string::npos);
    EXPECT_EQ(html.find("<link "), std::string::npos);
    EXPECT_NE(html.find("default-src 'none'"), std::string::npos);
}

// Inputs shared by the full-report tests (written once per process).
struct FullInputs {
    fs::path dir, panel, audit, control, monitor;
    std::vector<fs::path> runs;
    bool real_run = false;
};

const FullInputs& full_inputs() {
    static FullInputs in = [] {
        FullInputs f;
        // One directory per test process: ctest runs the tests of this file in parallel.
        static pmtest::TempDir tmp;
        f.dir = tmp.path;
        f.panel = f.dir / "panel.json";
        write_json(f.panel, synthetic_panel(6, 4, 8, 7));
        f.audit = f.dir / "audit.json";
        write_json(f.audit, to_json(synthetic_audit(6)));
        f.control = f.dir / "control.json";
        write_json(f.control, phasemap::steer::to_json(synthetic_control()));
        f.monitor = f.dir / "monitor.json";
        write_json(f.monitor, phasemap::steer::to_json(synthetic_monitor()));
        for (size_t i = 0; i < 8; ++i) {
            f.runs.push_back(f.dir / ("run" + std::to_string(i) + ".summary.json"));
            write_json(f.runs.back(), synthetic_summary("model-" + std::to_string(i % 6), i == 0 ? 3000 : 60 + 10 * i, 100 + i));
        }
        const fs::path model = pmtest::shared_model("stories260K.gguf");
        if (!model.empty()) {
            const fs::path real = f.dir / "stories.summary.json";
            auto r = run_phasemap({"generate", "-m", model.string(), "-p", "Once upon a time", "-n", "48", "--analyze",
                                   "--json", real.string()});
            if (r.exit_code == 0 && fs::exists(real)) f.runs.push_back(real), f.real_run = true;
            else ADD_FAILURE() << "generate --analyze failed: " << r.err;
        }
        return f;
    }();
    return in;
}

std::vector<std::string> full_args(const FullInputs& f, const fs::path& out) {
    std::vector<std::string> a = {"report", "-q", "-o", out.string(), "--title", "phasemap report — test panel",
                                  "--panel-json", f.panel.string(), "--audit-json", f.audit.string(),
                                  "--control-json", f.control.string(), "--monitor-json", f.monitor.string(), "--runs-json"};
    for (const auto& r : f.runs) a.push_back(r.string());
    return a;
}

// ------------------------------------------------------------------ numerics
// The report has no statistics of its own: its per-model and per-cell median intervals are drawn
// as the audit's regime section draws (src/stats, the same stream of the same seed). On samples of
// two dyadic values the median of every resample equals its mean exactly, so the report's median
// intervals must equal the audit's mean intervals bit for bit — for every model and every cell,
// which also pins the order the two walk the stream in. Five resamples: the percentile bounds then
// interpolate between individual draws, so they depend on exactly which draws were made.
TEST(ReportStats, MedianIntervalsEqualTheAuditsForTheSameSeed) {
    phasemap::PanelTable p;
    const std::vector<std::tuple<std::string, std::string, double>> runs = {
        {"model-a", "c1", 1.0}, {"model-a", "c1", 2.0}, {"model-b", "c1", 3.0}, {"model-b", "c1", 5.0},
        {"model-c", "c2", 0.5}, {"model-c", "c2", 4.0}};
    for (const auto& m : {"model-c", "model-a", "model-b"}) p.models.push_back({.label = m});   // not in label order
    int k = 0;
    for (const auto& [model, cat, v] : runs) {
        phasemap::PanelRun r;
        r.run_id = "run" + std::to_string(k);
        r.model = model;
        r.category = cat;
        r.prompt = "prompt " + std::to_string(k);
        r.seed = static_cast<uint64_t>(k++);
        r.norm = "raw";
        r.metrics["ratio_norm"] = v;
        p.runs.push_back(r);
    }
    size_t inner = 0;   // intervals strictly inside [min, max]: the check depends on the draws
    for (const uint64_t seed : {uint64_t{20240521}, uint64_t{7}, uint64_t{1}, uint64_t{2}}) {
        phasemap::audit::Options ao;
        ao.seed = seed;
        ao.bootstrap = 5;
        const auto audit = phasemap::audit::regime_table(p, ao);
        ASSERT_EQ(audit.models.size(), 3u);
        ASSERT_EQ(audit.cells.size(), 3u);
        phasemap::report::Inputs in;
        in.panel = p;
        phasemap::report::Options ro;
        ro.seed = seed;
        ro.bootstrap = 5;
        const auto d = phasemap::report::build_data(in, ro);
        ASSERT_EQ(d["model_stats"].size(), 3u);
        for (const auto& row : audit.models) {
            const auto it = std::find_if(d["model_stats"].begin(), d["model_stats"].end(),
                                         [&](const json& j) { return j["model"] == row.model; });
            ASSERT_NE(it, d["model_stats"].end()) << row.model;
            ASSERT_TRUE(row.ci.ok());
            const auto& xs = row.model == "model-a" ? std::pair{1.0, 2.0}
                             : row.model == "model-b" ? std::pair{3.0, 5.0} : std::pair{0.5, 4.0};
            inner += row.ci.lo > xs.first || row.ci.hi < xs.second;
            EXPECT_EQ((*it)["ci_low"].get<double>(), row.ci.lo) << row.model << " seed " << seed;
            EXPECT_EQ((*it)["ci_high"].get<double>(), row.ci.hi) << row.model << " seed " << seed;
        }
        for (const auto& row : audit.cells) {
            const auto it = std::find_if(d["model_category_stats"].begin(), d["model_category_stats"].end(), [&](const json& j) {
                return j["model"] == row.model && j["category"] == row.category;
            });
            ASSERT_NE(it, d["model_category_stats"].end()) << row.model;
            EXPECT_EQ((*it)["ci_low"].get<double>(), row.ci.lo) << row.model << "/" << row.category;
            EXPECT_EQ((*it)["ci_high"].get<double>(), row.ci.hi) << row.model << "/" << row.category;
        }
    }
    EXPECT_GT(inner, 0u);
}

TEST(ReportStats, DownsampleKeepsPeaks) {
    std::vector<double> v(1000, 1.0);
    v[0] = NAN;
    v[517] = 9.0;
    size_t w = 0;
    auto keep = phasemap::report::downsample_peaks(v, 100, w);
    EXPECT_EQ(w, 10u);
    EXPECT_EQ(keep.size(), 100u);
    EXPECT_NE(std::find(keep.begin(), keep.end(), 517u), keep.end());
    auto all = phasemap::report::downsample_peaks(std::vector<double>(50, 1.0), 100, w);
    EXPECT_EQ(w, 1u);
    EXPECT_EQ(all.size(), 50u);
}

TEST(ReportStats, AverageLinkageDendrogram) {
    // Two tight pairs far apart: {0, 2} and {1, 3}; the linkage from stats (the audit's).
    Eigen::MatrixXd d(4, 4);
    d << 0, 9, 1, 9, 9, 0, 9, 2, 1, 9, 0, 9, 9, 2, 9, 0;
    std::vector<std::array<double, 3>> ms;
    for (const auto& m : phasemap::stats::average_linkage(d)) ms.push_back({double(m.a), double(m.b), m.height});
    auto dg = phasemap::report::dendrogram_from_linkage(4, ms);
    ASSERT_EQ(dg.order.size(), 4u);
    EXPECT_EQ(dg.segments.size(), 9u);  // three rules per merge
    // Members of a pair are adjacent in the leaf order.
    auto pos = [&](size_t leaf) { return std::find(dg.order.begin(), dg.order.end(), leaf) - dg.order.begin(); };
    EXPECT_EQ(std::abs(pos(0) - pos(2)), 1);
    EXPECT_EQ(std::abs(pos(1) - pos(3)), 1);
    double top = 0;
    for (const auto& s : dg.segments) top = std::max(top, s["y2"].get<double>());
    EXPECT_DOUBLE_EQ(top, 9.0);
    // The same tree from a scipy-style linkage.
    auto l = phasemap::report::dendrogram_from_linkage(4, {{{0, 2, 1}}, {{1, 3, 2}}, {{4, 5, 9}}});
    EXPECT_EQ(l.order, (std::vector<size_t>{0, 2, 1, 3}));
}

TEST(ReportData, PanelFromJsonAndNoDataNotes) {
    auto p = phasemap::report::panel_from_json(synthetic_panel(2, 2, 3, 1));
    EXPECT_EQ(p.models.size(), 2u);
    EXPECT_EQ(p.runs.size(), 12u);
    EXPECT_EQ(p.models[1].variant_of.value_or(""), "model-0");
    EXPECT_THROW(phasemap::report::panel_from_json(json::object()), std::runtime_error);
    phasemap::report::Inputs in;
    in.panel = p;
    auto d = phasemap::report::build_data(in, {});
    EXPECT_EQ(d["model_stats"].size(), 2u);
    EXPECT_EQ(d["model_category_stats"].size(), 4u);
    EXPECT_FALSE(d.contains("trajectories"));
    EXPECT_TRUE(d["audit"].empty());
    const std::string page = phasemap::report::render_html(d);
    expect_self_contained(page);
    EXPECT_NE(page.find("No audit"), std::string::npos);
    EXPECT_FALSE(d.contains("control"));
    EXPECT_FALSE(d.contains("monitor"));
}

TEST(ReportData, ControlAndMonitorFigureRows) {
    phasemap::report::Inputs in;
    in.control_audit = {synthetic_control()};
    in.control_sources = {"/x/control.json"};
    in.monitor = {synthetic_monitor(), synthetic_monitor()};
    in.monitor_sources = {"/x/a.json", "r.duckdb › monitor"};
    const auto d = phasemap::report::build_data(in, {});
    // Control: the Δ rows of the three non-baseline arms, for the drawn measures, in facet order.
    const json& c = d["control"];
    EXPECT_EQ(c["measures"], json({"Δ ratio_norm", "Δ mean_ct", "Δ late_ct", "Δ mean_entropy", "Δ accuracy"}));
    ASSERT_EQ(c["rows"].size(), 3u * 5u);
    EXPECT_EQ(c["labels"], json({"intervened", "random", "zero"}));
    for (const auto& r : c["rows"]) {
        EXPECT_NE(r["arm"], "baseline");
        EXPECT_LE(r["ci_low"].get<double>(), r["mean"].get<double>());
        EXPECT_GE(r["ci_high"].get<double>(), r["mean"].get<double>());
        if (r["arm"] == "random" && r["measure"] == "Δ mean_ct") {
            EXPECT_DOUBLE_EQ(r["mean"].get<double>(), 0.15);
        }
    }
    // Monitor: two results × four arms × three measures; labels name the result.
    const json& m = d["monitor"];
    ASSERT_EQ(m["rows"].size(), 2u * 4u * 3u);
    EXPECT_EQ(m["labels"].size(), 8u);
    EXPECT_EQ(m["labels"][0], "a.json · baseline");
    EXPECT_EQ(m["labels"][7], "r.duckdb › monitor · monitor_guard");
    // Both figures are placed in the audits section, with the tables.
    std::string ids;
    for (const auto& sec : d["sections"])
        for (const auto& it : sec["items"]) {
            if (it["kind"] == "figure") ids += it["id"].get<std::string>() + " ";
            if (it["kind"] == "table") ids += "[" + it["title"].get<std::string>() + "] ";
        }
    EXPECT_NE(ids.find("control-audit [control audit: control.json"), std::string::npos) << ids;
    EXPECT_NE(ids.find("monitor-arms [monitor arms: a.json"), std::string::npos) << ids;
    EXPECT_NE(ids.find("[monitor arms: r.duckdb › monitor › summary_rows]"), std::string::npos) << ids;
}

// Control-audit / monitor-eval rows reach the report as steer::SummaryRow (the file-level error of
// a renamed field: ReportTyped.RenamedFieldInAControlAuditIsOneErrorNamingFileAndField).
TEST(ReportData, SummaryRowsAreTyped) {
    json row = {{"arm", "intervened"}, {"measure", "delta_ratio_norm"}, {"n", 5}, {"mean", 0.25}, {"ci_low", nullptr},
                {"ci_high", 0.5}};
    const auto typed = phasemap::steer::summary_row_from_json(row);
    EXPECT_EQ(typed.arm, "intervened");
    EXPECT_EQ(typed.n, 5u);
    EXPECT_EQ(typed.mean, 0.25);
    EXPECT_TRUE(std::isnan(typed.ci_low));
    EXPECT_EQ(phasemap::steer::to_json(typed), row);
}

TEST(ReportData, LayerDepthRowsAndNotes) {
    using phasemap::report::LayerProfile;
    phasemap::report::Inputs in;
    in.panel = phasemap::report::panel_from_json(synthetic_panel(2, 1, 2, 5));
    in.panel->runs[0].norm = "unit";  // one run of another normalisation mode
    // No DB read: the figure's note says where per-layer values come from.
    auto d = phasemap::report::build_data(in, {});
    EXPECT_FALSE(d.contains("layer_depth"));
    EXPECT_NE(d["layer_depth_missing"].get<std::string>().find("token_layers table of a results DB"), std::string::npos);
    // A DB without token_layers rows.
    in.layer_profiles_source = "old.duckdb";
    d = phasemap::report::build_data(in, {});
    EXPECT_NE(d["layer_depth_missing"].get<std::string>().find("old.duckdb has no token_layers rows"), std::string::npos);
    // Two models, three layers; no speed / turn at hf:0, no turn at the last layer.
    for (const char* m : {"model-0", "model-1"})
        for (int64_t l = 0; l < 3; ++l) {
            LayerProfile p{.model = m, .layer = "hf:" + std::to_string(l), .norm = "raw", .depth = double(l), .runs = 2};
            p.ct_t = {0.1 * double(l + 1), 0.05, 0.2, 30};
            if (l > 0) p.speed = {2.0 * double(l), 1.0, 3.0, 32};
            if (l == 1) p.turning_angle_rad = {1.2, 1.0, 1.4, 32};
            in.layer_profiles.push_back(p);
        }
    d = phasemap::report::build_data(in, {});
    EXPECT_FALSE(d.contains("layer_depth_missing"));
    const json& ld = d["layer_depth"];
    EXPECT_EQ(ld["norm"], "raw");
    EXPECT_EQ(ld["models"], json({"model-0", "model-1"}));
    EXPECT_EQ(ld["metrics"], json({"speed into the layer", "turning angle at the layer (rad)", "ct_t at the layer (token axis)"}));
    // Per model: 3 ct_t + 2 speed + 1 turn rows; undefined values are left out, not drawn as 0.
    ASSERT_EQ(ld["rows"].size(), 2u * 6u);
    for (const auto& r : ld["rows"]) {
        ASSERT_TRUE(r["median"].is_number()) << r.dump();
        EXPECT_LE(r["q1"].get<double>(), r["median"].get<double>()) << r.dump();
        if (r["metric"] == "speed into the layer") {
            EXPECT_DOUBLE_EQ(r["median"].get<double>(), 2.0 * r["depth"].get<double>());
            EXPECT_EQ(r["n"], 32);
        }
    }
    // The section: the figure, the per-layer table, the note on the run of another norm, and the
    // per-run summaries view.
    std::string items;
    for (const auto& sec : d["sections"])
        if (sec["id"] == "layers")
            for (const auto& it : sec["items"]) {
                items += it["kind"].get<std::string>() + ":";
                if (it.contains("id")) items += it["id"].get<std::string>();
                if (it.contains("title")) items += it["title"].get<std::string>() + "=" + std::to_string(it["rows"].size());
                if (it.contains("text")) items += it["text"].get<std::string>().substr(0, 30);
                items += " | ";
            }
    EXPECT_EQ(items, "figure:layer-depth | note:1 runs of other normalisation  | table:per-layer medians over tokens (q1 – q3)=6 | "
                     "figure:layer-profiles | ");
}

// ------------------------------------------------------------------ CLI errors
// ------------------------------------------------------------------ audit sections as figures and tidy tables
// Every table cell of the page's sections: a scalar, never JSON text.
void expect_tidy(const json& sections) {
    size_t tables = 0;
    for (const auto& sec : sections)
        for (const auto& it : sec["items"]) {
            if (it["kind"] != "table") continue;
            ++tables;
            for (const auto& c : it["columns"]) {
                EXPECT_NE(c, "ok") << it["title"];
                EXPECT_NE(c, "section") << it["title"];
            }
            for (const auto& row : it["rows"]) {
                ASSERT_EQ(row.size(), it["columns"].size()) << it["title"];
                for (const auto& v : row) {
                    EXPECT_TRUE(v.is_primitive()) << it["title"] << ": " << v.dump();
                    if (v.is_string()) {
                        const std::string t = v.get<std::string>();
                        EXPECT_TRUE(t.empty() || (t[0] != '{' && t[0] != '[')) << it["title"] << ": " << t;
                    }
                    // An internal field shown as a row ("ok: yes", "section: cycles").
                    if (row.size() == 2 && row[0].is_string()) {
                        EXPECT_NE(row[0], "ok") << it["title"];
                        EXPECT_NE(row[0], "section") << it["title"];
                    }
                }
            }
        }
    EXPECT_GT(tables, 10u);
}

const json* find_row(const json& rows, const std::string& panel, const std::string& label) {
    for (const auto& r : rows)
        if (r["panel"] == panel && r["label"] == label) return &r;
    return nullptr;
}

// On an audit where all nine sections ran (the pre-typed fixture): one heading per section, every
// table tidy, and each figure's points are the typed result's numbers.
TEST(ReportData, AuditSectionsAreFiguresAndTidyTables) {
    namespace pa = phasemap::audit;
    const fs::path fx = fs::path(PHASEMAP_SOURCE_DIR) / "tests/report/fixtures/pre-typed";
    phasemap::report::Inputs in;
    in.panel = phasemap::report::panel_from_json(json::parse(slurp(fx / "panel.json")));
    in.audit = pa::audit_result_from_json(json::parse(slurp(fx / "audit.json")));
    ASSERT_EQ(in.audit->sections.size(), 9u);
    phasemap::report::Options o;
    o.bootstrap = 50;
    const json d = phasemap::report::build_data(in, o);
    expect_tidy(d["sections"]);
    const json* audits = nullptr;
    for (const auto& s : d["sections"])
        if (s["id"] == "audits") audits = &s;
    ASSERT_NE(audits, nullptr);
    size_t headings = 0, runsets = 0;
    for (const auto& it : (*audits)["items"]) {
        headings += it["kind"] == "heading";
        runsets += it["kind"] == "text" && it["text"].get<std::string>().rfind("Runs with norm = raw", 0) == 0;
    }
    EXPECT_EQ(headings, 9u);
    EXPECT_EQ(runsets, 8u);   // every section but the normalisation one (which compares the modes)
    const json& a = d["audit"];
    for (const char* fig : {"normalisation", "variance", "topology", "cycles", "robustness", "predictor", "variants"})
        EXPECT_TRUE(a.contains(fig)) << fig;
    for (const auto& sec : in.audit->sections) {
        if (const auto* v = sec.get<pa::Variants>()) {
            ASSERT_FALSE(v->variants.empty());
            for (const auto& row : v->variants) {
                const json* r = find_row(a["variants"]["rows"], "Δ ratio_norm (variant − base)", row.model + " vs " + row.base);
                ASSERT_NE(r, nullptr) << row.model;
                EXPECT_EQ((*r)["value"].get<double>(), row.delta);
                EXPECT_EQ((*r)["ci_low"].get<double>(), row.delta_ci.lo);
            }
        } else if (const auto* rb = sec.get<pa::Robustness>()) {
            ASSERT_FALSE(rb->temperature.empty());
            for (const auto& row : rb->temperature) {
                const json* r = find_row(a["robustness"]["rows"], "across temperature", row.level_a + " vs " + row.level_b);
                ASSERT_NE(r, nullptr);
                EXPECT_EQ((*r)["value"].get<double>(), row.tau.tau);
            }
            const json* base = find_row(a["predictor"]["rows"], a["predictor"]["panels"][0].get<std::string>(), "majority class (baseline)");
            ASSERT_NE(base, nullptr);
            EXPECT_EQ((*base)["value"].get<double>(), rb->predictor.majority_test_accuracy);
        } else if (const auto* ns = sec.get<pa::NormSensitivity>()) {
            for (const auto& m : ns->modes) {
                const json* r = find_row(a["normalisation"]["rows"], "η² of ratio_norm by model", m.mode);
                ASSERT_NE(r, nullptr) << m.mode;
                EXPECT_EQ((*r)["value"].get<double>(), m.eta2);
            }
        } else if (const auto* cy = sec.get<pa::Cycles>()) {
            for (const auto& m : cy->models) {
                const json* r = find_row(a["cycles"]["rows"], "share of tokens in RIVALRY", m.model);
                ASSERT_NE(r, nullptr) << m.model;
                EXPECT_EQ((*r)["value"].get<double>(), m.state_rates[1].value);
            }
        }
    }
    // The registry: a verdict table, falsified first, with the sub-panel and full-panel results.
    bool registry = false;
    for (const auto& it : (*audits)["items"])
        if (it["kind"] == "table" && it["title"] == "falsification registry (falsified first)") {
            registry = true;
            EXPECT_EQ(it["columns"][2], "sub-panel result");
            EXPECT_EQ(it["columns"][3], "full-panel result");
        }
    EXPECT_TRUE(registry);
}

// The ROC figure: the audit's points of each predictor in the audit's order, the majority-class
// baseline as the corner it predicts, and a note (no figure) for an audit without ROC points; the
// topology caption names the robust pairs outlined, or says that none is.
TEST(ReportData, RocCurveFromTheAuditsPointsAndTopologyCaption) {
    namespace pa = phasemap::audit;
    const fs::path fx = fs::path(PHASEMAP_SOURCE_DIR) / "tests/report/fixtures/pre-typed";
    phasemap::report::Inputs in;
    in.panel = phasemap::report::panel_from_json(json::parse(slurp(fx / "panel.json")));
    json aj = json::parse(slurp(fx / "audit.json"));
    phasemap::report::Options o;
    o.bootstrap = 50;
    auto items_of = [](const json& d) {
        for (const auto& s : d["sections"])
            if (s["id"] == "audits") return s["items"];
        return json::array();
    };
    auto caption = [](const json& items, const std::string& id) {
        for (const auto& it : items)
            if (it["kind"] == "figure" && it["id"] == id) return it["caption"].get<std::string>();
        return std::string();
    };
    // The fixture predates the ROC points: a note, no figure data.
    in.audit = pa::audit_result_from_json(aj);
    json d = phasemap::report::build_data(in, o);
    EXPECT_FALSE(d["audit"].contains("roc"));
    bool noted = false;
    for (const auto& it : items_of(d)) noted = noted || (it["kind"] == "note" && it["text"].get<std::string>().find("keeps no ROC points") != std::string::npos);
    EXPECT_TRUE(noted);
    // No robust pair in the fixture: the caption says none is outlined.
    EXPECT_NE(caption(items_of(d), "audit-topology").find("No pair is robust (a mutual nearest-neighbour pair in at least 0.95 of"),
              std::string::npos) << caption(items_of(d), "audit-topology");
    // Points given (ties as a diagonal step; train split 20 of 60 collapsed → the majority calls
    // every run non-collapsed: the (0, 0) corner); one robust pair.
    json& cp = aj["sections"]["robustness"]["collapse_predictor"];
    cp["test_roc"] = json::array({{{"fpr", 0}, {"tpr", 0}}, {{"fpr", 0}, {"tpr", 0.5}}, {{"fpr", 0.25}, {"tpr", 1}}, {{"fpr", 1}, {"tpr", 1}}});
    cp["entropy_test_roc"] = json::array({{{"fpr", 0}, {"tpr", 0}}, {{"fpr", 1}, {"tpr", 1}}});
    json& tp = aj["sections"]["topology"];
    tp["pairs"][0]["robust"] = true;
    tp["robust_pairs"] = 1;
    tp["fragmentation"] = 1.0 - 2.0 / 5;
    in.audit = pa::audit_result_from_json(aj);
    d = phasemap::report::build_data(in, o);
    ASSERT_TRUE(d["audit"].contains("roc")) << d["audit"].dump();
    const json& roc = d["audit"]["roc"];
    ASSERT_EQ(roc["curves"].size(), 6u);
    const std::vector<std::array<double, 2>> late = {{0, 0}, {0, 0.5}, {0.25, 1}, {1, 1}};
    for (size_t i = 0; i < late.size(); ++i) {
        EXPECT_EQ(roc["curves"][i]["curve"], "late_ct (AUC 1.000)");
        EXPECT_EQ(roc["curves"][i]["i"], i);
        EXPECT_EQ(roc["curves"][i]["fpr"].get<double>(), late[i][0]);
        EXPECT_EQ(roc["curves"][i]["tpr"].get<double>(), late[i][1]);
    }
    EXPECT_EQ(roc["curves"][4]["curve"], "mean_entropy (AUC 0.557)");
    ASSERT_EQ(roc["baseline"].size(), 1u);
    EXPECT_EQ(roc["baseline"][0]["fpr"].get<double>(), 0.0);
    EXPECT_EQ(roc["baseline"][0]["tpr"].get<double>(), 0.0);
    EXPECT_EQ(roc["baseline"][0]["label"], "majority class (baseline): never collapsed");
    EXPECT_NEAR(roc["baseline"][0]["accuracy"].get<double>(), 2.0 / 3, 1e-12);
    EXPECT_NE(caption(items_of(d), "audit-topology").find("The 1 robust pair (mutual nearest neighbours in at least 0.95 of the bootstrap "
                                                          "resamples) is outlined in red."),
              std::string::npos) << caption(items_of(d), "audit-topology");
    EXPECT_EQ(d["audit"]["topology"]["robust_pairs"], 1);
}

// The phase map shows one normalisation mode at a time, on the audit's run set for that mode:
// medians per mode, identical greedy generations counted once, the audit's mode first.
TEST(ReportData, PhaseMapOneNormalisationAtATime) {
    phasemap::PanelTable p;
    p.models = {{.label = "a"}, {.label = "b"}};
    int k = 0;
    auto add = [&](const std::string& model, const std::string& norm, double v, const std::string& prompt, uint64_t seed, double temp) {
        phasemap::PanelRun r;
        r.run_id = "r" + std::to_string(k++);
        r.model = model;
        r.category = "c";
        r.prompt = prompt;
        r.seed = seed;
        r.temperature = temp;
        r.n_predict = 8;
        r.n_generated = 8;
        r.text = "text of " + prompt + " " + std::to_string(seed) + (temp == 0 ? "" : " sampled");
        r.norm = norm;
        r.metrics["ratio_norm"] = v;
        p.runs.push_back(r);
    };
    for (const auto& [norm, scale] : {std::pair<std::string, double>{"raw", 1.0}, {"unit", 10.0}}) {
        add("a", norm, 1 * scale, "p1", 1, 0.7);
        add("a", norm, 2 * scale, "p2", 1, 0.7);
        add("a", norm, 3 * scale, "p3", 1, 0.7);
        add("b", norm, 5 * scale, "p1", 1, 0.7);
        add("b", norm, 7 * scale, "p2", 1, 0.7);
    }
    // A greedy run repeated with another seed (same generation): one statistical unit.
    add("b", "raw", 9, "p3", 1, 0.0);
    p.runs.back().text = "greedy";
    add("b", "raw", 9, "p3", 2, 0.0);
    p.runs.back().text = "greedy";
    phasemap::report::Inputs in;
    in.panel = p;
    phasemap::report::Options o;
    o.bootstrap = 20;
    json d = phasemap::report::build_data(in, o);
    EXPECT_EQ(d["norms"], json({"raw", "unit"}));
    EXPECT_EQ(d["norm"], "raw");   // the most common mode (7 runs against 5)
    std::map<std::string, json> st;
    for (const auto& m : d["model_stats"]) st[m["model"].get<std::string>() + "/" + m["norm"].get<std::string>()] = m;
    ASSERT_EQ(st.size(), 4u);
    EXPECT_DOUBLE_EQ(st["a/raw"]["median"].get<double>(), 2.0);
    EXPECT_DOUBLE_EQ(st["a/unit"]["median"].get<double>(), 20.0);
    EXPECT_DOUBLE_EQ(st["b/unit"]["median"].get<double>(), 60.0);
    EXPECT_EQ(st["b/raw"]["n"], 3);                        // 5, 7 and the greedy generation once
    EXPECT_DOUBLE_EQ(st["b/raw"]["median"].get<double>(), 7.0);
    size_t raw_points = 0;
    for (const auto& r : d["runs"]) raw_points += r["norm"] == "raw";
    EXPECT_EQ(raw_points, 6u);
    // With an audit, its regime section's mode comes first.
    phasemap::audit::AuditResult a;
    phasemap::audit::AuditSection s;
    s.name = "regime";
    phasemap::audit::RegimeTable rt;
    rt.norm = "unit";
    s.result = rt;
    a.sections.push_back(s);
    in.audit = a;
    d = phasemap::report::build_data(in, o);
    EXPECT_EQ(d["norm"], "unit");
}

TEST(ReportCli, Errors) {
    auto r = run_phasemap({"report", "-o", (out_dir() / "x.html").string()});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("nothing to report"), std::string::npos) << r.err;
    r = run_phasemap({"report", "--runs-json", "/nonexistent/run.json"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("cannot read JSON file '/nonexistent/run.json': no such file"), std::string::npos) << r.err;
    r = run_phasemap({"report", "--panel-json", full_inputs().panel.string(), "--regime-cuts", "3,2,1"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("--regime-cuts: regime cut-points must be strictly ascending"), std::string::npos) << r.err;
    // metrics' one strict parser: a fourth number or trailing text is refused, not ignored.
    r = run_phasemap({"report", "--panel-json", full_inputs().panel.string(), "--regime-cuts", "1,2,3,4"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("--regime-cuts: regime cut-points: expected 3 comma-separated numbers, got more"), std::string::npos) << r.err;
    r = run_phasemap({"report", "--panel-json", full_inputs().panel.string(), "--regime-cuts", "1,2,3x"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("'3x' is not a number"), std::string::npos) << r.err;
}

// ------------------------------------------------------------------ the page in a browser
TEST(ReportBrowser, FullReportRenders) {
    REQUIRE_BROWSER(chrome);
    const auto& f = full_inputs();
    const fs::path html = out_dir() / "report-full.html";
    auto r = run_phasemap(full_args(f, html));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string page = slurp(html);
    expect_self_contained(page);
    const fs::path shot = out_dir() / "report-full.png";
    auto s = open_page(chrome, html, shot);
    // phase map, by category, trajectories, layer profiles, normalisation, variance, topology,
    // cycles, control audit, monitor arms (the synthetic audit has no transitions, dwell times,
    // rankings, predictor or variants)
    expect_rendered(s, 10);
    for (const char* fig : {"phase-map", "phase-map-category", "trajectories", "layer-profiles", "audit-normalisation",
                            "audit-variance", "audit-topology", "audit-cycles", "control-audit", "monitor-arms"})
        EXPECT_GT(s.j["figures"].value(fig, 0), 0) << fig;
    // control audit: 15 points + 15 error bars (+ the zero rules); monitor: 12 bars + 12 error bars.
    EXPECT_GE(s.j["figures"]["control-audit"].get<int>(), 30) << s.j.dump();
    EXPECT_GE(s.j["figures"]["monitor-arms"].get<int>(), 24) << s.j.dump();
    // Tables: falsified hypothesis first, the failed section's reason, control/monitor results.
    const size_t falsified = s.dom.find("H-falsified"), survived = s.dom.find("H-survive");
    EXPECT_LT(falsified, survived);
    EXPECT_NE(s.dom.find("robustness: one temperature only"), std::string::npos);
    EXPECT_NE(s.dom.find("control audit: control.json"), std::string::npos);
    EXPECT_NE(s.dom.find("monitor arms: monitor.json"), std::string::npos);
    EXPECT_NE(s.dom.find("downsampled"), std::string::npos);  // the 3,000-token run
    // JSON inputs only: no per-layer values, and the layer-depth figure says why.
    EXPECT_EQ(s.j["figures"].count("layer-depth"), 0u);
    EXPECT_NE(s.dom.find("No per-layer values: they come from the token_layers table"), std::string::npos);
    std::cout << "[ report ] " << html.string() << " " << page.size() << " bytes, screenshot " << shot.string()
              << (f.real_run ? " (with the stories260K run)" : " (stories260K absent: synthetic runs only)") << "\n";
}

TEST(ReportBrowser, OneModelOneRun) {
    REQUIRE_BROWSER(chrome);
    const auto& f = full_inputs();
    const fs::path html = out_dir() / "report-one-run.html";
    const fs::path run = f.real_run ? f.runs.back() : f.runs[1];
    auto r = run_phasemap({"report", "-q", "-o", html.string(), "--runs-json", run.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto s = open_page(chrome, html, out_dir() / "report-one-run.png");
    // phase map (one point), by category (one cell), trajectory, layer profiles; no audit figures.
    expect_rendered(s, 4);
    EXPECT_NE(s.dom.find("No variance decomposition"), std::string::npos);
    EXPECT_NE(s.dom.find("No topology figure"), std::string::npos);
    EXPECT_NE(s.dom.find("No audit"), std::string::npos);
    EXPECT_NE(s.dom.find("No control-audit results"), std::string::npos);
    EXPECT_NE(s.dom.find("No monitor-arm results"), std::string::npos);
    EXPECT_EQ(s.dom.find("id=\"fig-control-audit\""), std::string::npos);
    EXPECT_NE(s.dom.find("Only one model"), std::string::npos);
}

TEST(ReportBrowser, ThousandRunPanelUnder10MB) {
    REQUIRE_BROWSER(chrome);
    const fs::path dir = out_dir() / "panel1000";
    fs::create_directories(dir);
    // 20 models × 5 categories × 10 runs = 1,000 runs, each with a 1,000-token summary.
    write_json(dir / "panel.json", synthetic_panel(20, 5, 10, 3));
    write_json(dir / "audit.json", to_json(synthetic_audit(20)));
    std::vector<std::string> args = {"report", "-q", "-o", (dir / "report.html").string(), "--panel-json",
                                     (dir / "panel.json").string(), "--audit-json", (dir / "audit.json").string(), "--runs-json"};
    for (size_t i = 0; i < 1000; ++i) {
        const fs::path p = dir / ("run" + std::to_string(i) + ".json");
        if (!fs::exists(p)) write_json(p, synthetic_summary("model-" + std::to_string(i % 20), 1000, i));
        args.push_back(p.string());
    }
    auto r = run_phasemap(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto size = fs::file_size(dir / "report.html");
    std::cout << "[ report ] 1,000-run panel: " << size << " bytes\n";
    EXPECT_LT(size, 10u * 1000 * 1000);
    auto s = open_page(chrome, dir / "report.html");
    expect_rendered(s, 8);
}

// ------------------------------------------------------------------ typed inputs
// The page data from typed inputs equals what the untyped (JSON-reading) report wrote on the same
// files: tests/report/fixtures/pre-typed/page-data.json was produced by the pre-change binary (its
// README says how). The generation time and the generator's version are masked.
void mask_generation(json& j) {
    if (j.is_array() && j.size() == 2 && j[0].is_string() && (j[0] == "generated" || j[0] == "generator")) j[1] = "X";
    if (j.is_structured())
        for (auto& x : j) mask_generation(x);
}

json page_data_of(const std::string& html) {
    const std::string open = "id=\"pm-data\">";
    const size_t a = html.find(open);
    if (a == std::string::npos) return json();
    const size_t b = html.find("</script>", a);
    return json::parse(html.substr(a + open.size(), b - a - open.size()));
}

const char* kFixtureFiles[] = {"panel.json", "audit.json", "story.summary.json", "control.json", "monitor.json"};

pmtest::RunResult report_in(const fs::path& dir, const std::string& args) {
    return run_command({"/bin/sh", "-c", "cd '" + dir.string() + "' && exec '" + pmtest::phasemap_binary().string() + "' report -q " + args});
}

TEST(ReportTyped, TypedInputsGiveThePageDataOfTheUntypedReport) {
    const fs::path fx = fs::path(PHASEMAP_SOURCE_DIR) / "tests/report/fixtures/pre-typed";
    pmtest::TempDir tmp;
    for (const char* f : kFixtureFiles) fs::copy_file(fx / f, tmp / f);
    const auto r = report_in(tmp.path, "--panel-json panel.json --audit-json audit.json --runs-json story.summary.json "
                                       "--control-json control.json --monitor-json monitor.json -o page.html");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    json now = page_data_of(slurp(tmp / "page.html")), before = json::parse(slurp(fx / "page-data.json"));
    mask_generation(now);
    mask_generation(before);
    EXPECT_TRUE(now.contains("control") && now.contains("monitor") && now.contains("trajectories"));
    // Issue 18 changed the page by design: the audit sections became figures and tidy tables (the
    // sections' items), and the run points and medians carry their normalisation mode (one mode at
    // a time). Everything else is still the untyped report's page data.
    for (const auto& [k, v] : before.items()) {
        if (k == "audit" || k == "sections") continue;
        json n = now[k];
        if (k == "runs" || k == "model_stats" || k == "model_category_stats")
            for (auto& r : n) {
                EXPECT_EQ(r["norm"], "raw") << k;   // the panel's one mode
                r.erase("norm");
            }
        EXPECT_TRUE(n == v) << k << ": " << json::diff(v, n).dump(1).substr(0, 2000);
    }
    EXPECT_EQ(now["norms"], json({"raw"}));
    // The variance and topology figures are drawn as before; the cycle rates of the old figure are
    // the exit / reopening panels of the new one, with the same values and intervals.
    EXPECT_EQ(now["audit"]["variance"], before["audit"]["variance"]);
    // (the topology data gained the count of robust pairs for the figure's title)
    EXPECT_EQ(now["audit"]["topology"]["robust_pairs"], 0);
    now["audit"]["topology"].erase("robust_pairs");
    EXPECT_EQ(now["audit"]["topology"], before["audit"]["topology"]);
    size_t found = 0;
    for (const auto& old : before["audit"]["cycles"]["rows"]) {
        const std::string panel = old["measure"] == "exit_rate" ? "COLLAPSE exit rate per episode" : "COLLAPSE reopening rate per episode";
        for (const auto& r : now["audit"]["cycles"]["rows"])
            if (r["panel"] == panel && r["label"] == old["label"]) {
                EXPECT_EQ(r["value"], old["value"]);
                EXPECT_EQ(r["ci_low"], old["ci_low"]);
                EXPECT_EQ(r["ci_high"], old["ci_high"]);
                ++found;
            }
    }
    EXPECT_EQ(found, before["audit"]["cycles"]["rows"].size());
}

// A control-audit / monitor-eval document is read as its type (steer::control_audit_from_json) at the
// edge: a summary row without a field (here "mean" renamed) is one clear error naming the file and
// the field, not a figure silently missing a bar.
TEST(ReportTyped, RenamedFieldInAControlAuditIsOneErrorNamingFileAndField) {
    const fs::path fx = fs::path(PHASEMAP_SOURCE_DIR) / "tests/report/fixtures/pre-typed";
    pmtest::TempDir tmp;
    fs::copy_file(fx / "story.summary.json", tmp / "s.json");
    json c = json::parse(slurp(fx / "control.json"));
    c["summary_rows"][1]["average"] = c["summary_rows"][1]["mean"];
    c["summary_rows"][1].erase("mean");
    write_json(tmp / "ca.json", c);
    auto r = report_in(tmp.path, "--control-json ca.json --runs-json s.json -o x.html");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("ca.json: summary_rows[1].mean: missing"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(tmp / "x.html"));
    json m = json::parse(slurp(fx / "monitor.json"));
    m["per_prompt"][0]["baseline"]["correct"] = "yes";
    write_json(tmp / "me.json", m);
    r = report_in(tmp.path, "--monitor-json me.json --runs-json s.json -o x.html");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("me.json: per_prompt[0].baseline.correct: expected true or false"), std::string::npos) << r.err;
}

TEST(ReportTyped, RenamedFieldInAnInputIsOneErrorNamingFileAndField) {
    const fs::path fx = fs::path(PHASEMAP_SOURCE_DIR) / "tests/report/fixtures/pre-typed";
    pmtest::TempDir tmp;
    for (const char* f : kFixtureFiles) fs::copy_file(fx / f, tmp / f);
    json a = json::parse(slurp(tmp / "audit.json"));
    a["sections"]["topology"]["pairs"][0]["mnn_share"] = a["sections"]["topology"]["pairs"][0]["share"];
    a["sections"]["topology"]["pairs"][0].erase("share");
    write_json(tmp / "renamed.json", a);
    auto r = report_in(tmp.path, "--audit-json renamed.json -o x.html");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("renamed.json: sections.topology.pairs[0].share: missing"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(tmp / "x.html"));
    // The old loose layouts (an array of sections) are not an audit document.
    write_json(tmp / "array.json", json::array({a["sections"]["regime"]}));
    r = report_in(tmp.path, "--audit-json array.json -o x.html");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("array.json: (document): expected an object"), std::string::npos) << r.err;
    // A per-run summary with a field of the wrong type.
    json s = json::parse(slurp(tmp / "story.summary.json"));
    s["token_axis"]["ratio_norm"] = "high";
    write_json(tmp / "bad.summary.json", s);
    r = report_in(tmp.path, "--runs-json bad.summary.json -o x.html");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("bad.summary.json: token_axis.ratio_norm: expected a number or null"), std::string::npos) << r.err;
}

// The audit's cut-points are used when the runs carry none. The JSON-reading report looked for a
// top-level "regime_cuts" that `phasemap audit --json` never writes (it is options.regime_cuts),
// so it always fell back to the defaults; the typed field cannot be missed.
TEST(ReportTyped, CutPointsComeFromTheAuditsOptions) {
    phasemap::report::Inputs in;
    in.panel = phasemap::report::panel_from_json(synthetic_panel(2, 2, 3, 1));
    phasemap::audit::AuditResult a = synthetic_audit(2);
    a.options.cuts = {1.5, 2.5, 3.5};
    in.audit = phasemap::audit::audit_result_from_json(to_json(a));
    in.audit_source = "audit.json";
    const auto d = phasemap::report::build_data(in, {});
    EXPECT_EQ(d["cuts"], json({1.5, 2.5, 3.5}));
    EXPECT_NE(d.dump().find("(from the audit)"), std::string::npos);
}

TEST(ReportTyped, SummaryRecordReadsTheWriterLayout) {
    const fs::path fx = fs::path(PHASEMAP_SOURCE_DIR) / "tests/report/fixtures/pre-typed";
    const json j = json::parse(slurp(fx / "story.summary.json"));
    const auto s = phasemap::io::summary_record_from_json(j);
    EXPECT_EQ(s.model_id, j["model_id"].get<std::string>());
    EXPECT_EQ(s.ratio_norm, j["token_axis"]["ratio_norm"].get<double>());
    EXPECT_EQ(s.generated_tokens, j["input"]["generated_tokens"].get<int64_t>());
    EXPECT_EQ(s.ct_t.size(), j["per_token"]["ct_t"].size());
    EXPECT_EQ(s.token.size(), j["per_token"]["token"].size());
    EXPECT_EQ(s.regime_cuts.value_or(""), j["options"]["regime_cuts"].get<std::string>());
    EXPECT_TRUE(s.medians.count("trajectory.mean_speed"));
    EXPECT_EQ(s.settings["schema_version"], j["schema_version"]);
    // LIMEN's layout: top-level model_id and family, nothing else required.
    const auto l = phasemap::io::summary_record_from_json({{"model_id", "m"}, {"family", "f"}});
    EXPECT_EQ(l.family, "f");
    EXPECT_TRUE(std::isnan(l.ratio_norm));
    EXPECT_THROW(phasemap::io::summary_record_from_json({{"per_token", {{"ct_t", {1.0, "x"}}}}}), std::runtime_error);
}

TEST(ReportExport, SvgAndPng) {
    const auto& f = full_inputs();
    const fs::path svg = out_dir() / "svg", png = out_dir() / "png";
    fs::remove_all(svg);
    fs::remove_all(png);
    auto args = full_args(f, out_dir() / "report-export.html");
    for (auto x : {"--svg", svg.c_str(), "--png", png.c_str()}) args.push_back(x);
    auto r = run_phasemap(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    size_t n = 0;
    for (const char* fig : {"phase-map", "phase-map-category", "trajectories", "layer-profiles", "audit-normalisation",
                            "audit-variance", "audit-topology", "audit-cycles", "control-audit", "monitor-arms"}) {
        const std::string s = slurp(svg / (std::string(fig) + ".svg"));
        EXPECT_NE(s.find("<svg"), std::string::npos) << fig;
        EXPECT_GT(s.size(), 2000u) << fig;
        const std::string p = slurp(png / (std::string(fig) + ".png"));
        ASSERT_GT(p.size(), 8u) << fig;
        EXPECT_EQ(p.substr(1, 3), "PNG") << fig;
        ++n;
    }
    EXPECT_EQ(n, 10u);
    EXPECT_EQ(std::distance(fs::directory_iterator(svg), fs::directory_iterator{}), 10);
}

}  // namespace

#ifdef PHASEMAP_REPORT_DB
namespace {

// `phasemap report DB`: a small panel run into a results DB, the audits computed from it.
TEST(ReportDb, FromResultsDb) {
    REQUIRE_BROWSER(chrome);
    const fs::path model = pmtest::shared_model("stories260K.gguf");
    if (model.empty()) GTEST_SKIP() << "../shared/models/stories260K.gguf absent";
    pmtest::TempDir tmp;
    {
        std::ofstream m(tmp / "m.toml");
        m << "name = \"report-test\"\n[generation]\ntemperatures = [0.0, 0.7]\nn_predict = [16]\nseeds = [1]\n"
          << "[[models]]\nlabel = \"stories\"\npath = \"" << model.string() << "\"\nfamily = \"llama\"\n"
          << "[[prompts]]\nbuiltin = \"stories\"\ncategories = [\"animals\", \"family\"]\nlimit = 2\n";
    }
    auto r = run_phasemap({"panel", "run", (tmp / "m.toml").string(), "--db", (tmp / "r.duckdb").string(), "-t", "1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // A control audit and a monitor evaluation stored in the same DB (default names).
    {
        std::ofstream p(tmp / "prompts.txt");
        p << "Once upon a time\nLily and Tom went to the park\nThe little dog was sad\n";
        std::ofstream q(tmp / "qa.csv");
        q << "prompt,answer\nOnce upon a time,the\nLily and Tom went to the park,park\nThe little dog was sad,zqxjv\n";
    }
    r = run_phasemap({"control-audit", "-q", "-m", model.string(), "--prompts", (tmp / "prompts.txt").string(), "--intervene",
                      "noise:block:2:0.5@seed=3", "-n", "12", "--bootstrap", "200", "--db", (tmp / "r.duckdb").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = run_phasemap({"monitor-eval", "-q", "-m", model.string(), "--data", (tmp / "qa.csv").string(), "-n", "16", "--bootstrap", "200",
                      "--db", (tmp / "r.duckdb").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const fs::path html = out_dir() / "report-db.html";
    r = run_phasemap({"report", "-q", (tmp / "r.duckdb").string(), "-o", html.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto s = open_page(chrome, html, out_dir() / "report-db.png");
    ASSERT_TRUE(s.j.is_object());
    // Phase map, by category and layer profiles at least; the audit figures the sections allow.
    EXPECT_GE(s.j["expected"].get<size_t>(), 3u);
    expect_rendered(s, s.j["expected"].get<size_t>());
    EXPECT_NE(s.dom.find("8 runs"), std::string::npos);
    // Token series come from the DB's tokens table: the trajectories figure is drawn.
    EXPECT_NE(s.dom.find("id=\"fig-trajectories\""), std::string::npos);
    // token_layers of the panel run: the layer profiles over depth are drawn.
    EXPECT_GT(s.j["figures"].value("layer-depth", 0), 0) << s.j.dump();
    // The stored control audit and monitor evaluation are drawn and tabled.
    EXPECT_GT(s.j["figures"].value("control-audit", 0), 0) << s.j.dump();
    EXPECT_GT(s.j["figures"].value("monitor-arms", 0), 0) << s.j.dump();
    EXPECT_NE(s.dom.find("control audit: r.duckdb › control"), std::string::npos);
    EXPECT_NE(s.dom.find("monitor arms: r.duckdb › monitor"), std::string::npos);
    // JSON inputs of a kind replace the stored results of that kind.
    const fs::path html2 = tmp / "report-db-json.html";
    write_json(tmp / "control.json", phasemap::steer::to_json(synthetic_control()));
    r = run_phasemap({"report", "-q", (tmp / "r.duckdb").string(), "-o", html2.string(), "--control-json", (tmp / "control.json").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string page2 = slurp(html2);
    EXPECT_EQ(page2.find("control audit: r.duckdb › control"), std::string::npos);
    EXPECT_NE(page2.find("control audit: control.json"), std::string::npos);
    EXPECT_NE(page2.find("monitor arms: r.duckdb › monitor"), std::string::npos);
    r = run_phasemap({"report", (tmp / "missing.duckdb").string(), "-o", (tmp / "x.html").string()});
    EXPECT_EQ(r.exit_code, 1);
}

// The report data embedded in a page (#pm-data).
json page_data(const std::string& html) {
    const std::string open = "id=\"pm-data\">";
    const size_t a = html.find(open);
    if (a == std::string::npos) return json();
    const size_t b = html.find("</script>", a);
    return json::parse(html.substr(a + open.size(), b - a - open.size()));
}

// A results DB of hand-made runs (random states for the run-level metrics) whose token_layers
// rows hold chosen values: model "a" (two runs, norm raw), model "b" (one run, raw), and one run
// of "a" under another norm that the profiles leave out.
void synthetic_layer_db(const fs::path& db, bool with_layers) {
    using namespace phasemap;
    auto s = store::Store::open(db);
    const double N = std::nan("");
    std::mt19937_64 g(9);
    std::normal_distribution<float> nd;
    int k = 0;
    auto commit = [&](const std::string& model, const std::string& norm, size_t T, const std::vector<store::LayerTokenData>& layers) {
        store::ModelRow m;
        m.label = model;
        m.sha256 = std::string(64, model[0]);
        m.family = "fam-" + model;
        s->put_model(m);
        std::vector<float> states(T * 3 * 8);
        for (auto& x : states) x = nd(g);
        std::vector<metrics::TokenProbStats> stats(T);
        std::vector<store::TokenData> tokens;
        for (size_t t = 0; t < T; ++t) tokens.push_back({int32_t(t), "tok" + std::to_string(t), int64_t(t)});
        const std::vector<std::string> names{"hf:1", "hf:2", "hf:3"};
        const auto sum = metrics::analyze_run({states.data(), T, 3, 8, names}, stats);
        store::RunRow r;
        r.run_id = "run" + std::to_string(k++);
        r.model = model;
        r.category = "c";
        r.norm = norm;
        r.n_generated = int64_t(T);
        r.metric_options = "{}";
        s->commit_run(r, sum, tokens, with_layers ? layers : std::vector<store::LayerTokenData>{});
    };
    // {layer, delta_t, curvature_t, ct_t, speed, turning_angle_rad}
    commit("a", "raw", 4, {{"hf:0", {}, {}, {N, N, 0.5, 0.7}, {}, {}},
                           {"hf:1", {}, {}, {N, N, 1, 3}, {1, 2, 3, 4}, {0.2, 0.2, 0.4, 0.4}},
                           {"hf:2", {}, {}, {N, N, 2, 2}, {10, 10, 10, 10}, {}}});
    commit("a", "raw", 5, {{"hf:0", {}, {}, {N, N, 0.6, 0.6, 0.6}, {}, {}},
                           {"hf:1", {}, {}, {N, N, 5, 5, 5}, {5, 6, 7, 8, 9}, {0.4, 0.4, 0.4, 0.4, 0.4}},
                           {"hf:2", {}, {}, {N, N, 2, 2, 2}, {30, 30, 30, 30, 30}, {}}});
    commit("b", "raw", 3, {{"hf:0", {}, {}, {N, N, 1}, {}, {}},
                           {"hf:1", {}, {}, {N, N, 1}, {100, 200, 300}, {1, 1, 1}},
                           {"hf:2", {}, {}, {N, N, 1}, {50, 50, 50}, {}}});
    commit("a", "unit", 3, {{"hf:1", {}, {}, {N, N, 99}, {999, 999, 999}, {3, 3, 3}}});
}

// `phasemap report` over synthetic_layer_db (with or without its token_layers rows), written to
// out_dir() / name.
void report_synthetic_layer_db(const pmtest::TempDir& tmp, bool with_layers, const std::string& name, fs::path& html) {
    synthetic_layer_db(tmp / "r.duckdb", with_layers);
    html = out_dir() / name;
    auto r = run_phasemap({"report", "-q", (tmp / "r.duckdb").string(), "-o", html.string(), "--bootstrap", "50"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
}

// `phasemap report DB` on a synthetic DB: the per-layer rows in the page have the DB's medians
// and the layer-depth figure renders with a mark per point.
TEST(ReportDb, LayerProfilesOverDepthFromSyntheticDb) {
    pmtest::TempDir tmp;
    fs::path html;
    ASSERT_NO_FATAL_FAILURE(report_synthetic_layer_db(tmp, true, "report-layers.html", html));
    const json d = page_data(slurp(html));
    ASSERT_TRUE(d.contains("layer_depth")) << d.value("layer_depth_missing", json()).dump();
    const json& ld = d["layer_depth"];
    EXPECT_EQ(ld["norm"], "raw");
    EXPECT_EQ(ld["models"], json({"a", "b"}));
    std::map<std::string, json> by;  // "model layer metric" → row
    for (const auto& row : ld["rows"])
        by[row["model"].get<std::string>() + " " + row["layer"].get<std::string>() + " " + row["metric"].get<std::string>()] = row;
    // a: 3 ct_t + 2 speed + 1 turn; b: the same; the "unit" run is left out.
    EXPECT_EQ(ld["rows"].size(), 12u);
    auto med = [&](const std::string& k) { return by.count(k) ? by[k]["median"].get<double>() : NAN; };
    EXPECT_DOUBLE_EQ(med("a hf:1 speed into the layer"), 5.0);            // 1..9 over both runs
    EXPECT_DOUBLE_EQ(by["a hf:1 speed into the layer"]["q1"].get<double>(), 3.0);
    EXPECT_DOUBLE_EQ(by["a hf:1 speed into the layer"]["q3"].get<double>(), 7.0);
    EXPECT_EQ(by["a hf:1 speed into the layer"]["n"], 9);
    EXPECT_EQ(by["a hf:1 speed into the layer"]["runs"], 2);
    EXPECT_EQ(by["a hf:1 speed into the layer"]["depth"], 1);
    EXPECT_DOUBLE_EQ(med("a hf:2 speed into the layer"), 30.0);           // 4 × 10, 5 × 30
    EXPECT_DOUBLE_EQ(med("a hf:1 turning angle at the layer (rad)"), 0.4);
    EXPECT_DOUBLE_EQ(med("a hf:0 ct_t at the layer (token axis)"), 0.6);  // {0.5, 0.7, 0.6, 0.6, 0.6}
    // Pooled over tokens {1, 3, 5, 5, 5}, not the median of the run medians (2 and 5).
    EXPECT_DOUBLE_EQ(med("a hf:1 ct_t at the layer (token axis)"), 5.0);
    EXPECT_DOUBLE_EQ(med("b hf:1 speed into the layer"), 200.0);
    EXPECT_DOUBLE_EQ(by["b hf:1 speed into the layer"]["q1"].get<double>(), 150.0);
    EXPECT_EQ(by.count("a hf:0 speed into the layer"), 0u);
    EXPECT_EQ(by.count("a hf:2 turning angle at the layer (rad)"), 0u);
    for (const auto& [k, row] : by) EXPECT_LT(row["median"].get<double>(), 900) << k << " (a run of another norm)";
    REQUIRE_BROWSER(chrome);
    auto s = open_page(chrome, html, out_dir() / "report-layers.png");
    expect_rendered(s, s.j["expected"].get<size_t>());
    // One symbol per row, plus the lines and the bands.
    EXPECT_GE(s.j["figures"].value("layer-depth", 0), 12 + 2) << s.j.dump();
    EXPECT_NE(s.dom.find("1 runs of other normalisation modes (unit)"), std::string::npos);
    EXPECT_NE(s.dom.find("per-layer medians over tokens"), std::string::npos);
}

// A DB whose runs were stored without per-layer series: the section says so.
TEST(ReportDb, NoTokenLayersSaysSo) {
    pmtest::TempDir tmp;
    fs::path html;
    ASSERT_NO_FATAL_FAILURE(report_synthetic_layer_db(tmp, false, "report-no-layers.html", html));
    const json d = page_data(slurp(html));
    EXPECT_FALSE(d.contains("layer_depth"));
    EXPECT_NE(d["layer_depth_missing"].get<std::string>().find("has no token_layers rows"), std::string::npos);
    REQUIRE_BROWSER(chrome);
    auto s = open_page(chrome, html);
    expect_rendered(s, s.j["expected"].get<size_t>());
    EXPECT_EQ(s.j["figures"].count("layer-depth"), 0u);
    EXPECT_NE(s.dom.find("has no token_layers rows"), std::string::npos);
}

// The acceptance test of the demo (issue 18): the demo's own manifest and hypotheses
// (examples/demo_panel.toml, examples/demo_hypotheses.toml) on a smaller grid — three prompt
// categories, budgets 8 and 16 — with its models made as scripts/demo.sh makes them, a control
// audit and a monitor evaluation stored beside it. Every figure of the page has marks (no "no
// figure" note), no table cell holds JSON, no console error, the page is self-contained (CSP
// unchanged) and opened from file:// without a network.
TEST(ReportDb, DemoPanelEveryFigureHasMarks) {
    REQUIRE_BROWSER(chrome);
    const fs::path stories = pmtest::shared_model("stories260K.gguf"), rwkv = pmtest::shared_model("tiny-rwkv7-834K.gguf");
    if (stories.empty() || rwkv.empty()) GTEST_SKIP() << "../shared/models/{stories260K,tiny-rwkv7-834K}.gguf absent";
    pmtest::TempDir tmp;
    const fs::path ex = fs::path(PHASEMAP_SOURCE_DIR) / "examples";
    fs::create_directories(tmp / "models");
    fs::create_symlink(stories, tmp / "models/stories260K.gguf");
    fs::create_symlink(rwkv, tmp / "models/tiny-rwkv7-834K.gguf");
    for (const std::vector<std::string>& cmd : std::vector<std::vector<std::string>>{
             {"quantize", (tmp / "models/stories260K.gguf").string(), (tmp / "models/stories260K-q8_0.gguf").string(), "--type", "Q8_0", "-q"},
             {"make-model", "--lora-for", (tmp / "models/stories260K.gguf").string(), "--seed", "3", "-o", (tmp / "models/stories260K-lora.gguf").string()},
             {"make-model", "--arch", "gpt2", "--size", "tiny", "--seed", "11", "-o", (tmp / "models/rand-gpt2.gguf").string()},
             {"make-model", "--arch", "gemma2", "--size", "tiny", "--seed", "12", "-o", (tmp / "models/rand-gemma2.gguf").string()}}) {
        const auto r = run_phasemap(cmd);
        ASSERT_EQ(r.exit_code, 0) << cmd[0] << ": " << r.err;
    }
    std::string manifest = slurp(ex / "demo_panel.toml");
    manifest = std::regex_replace(manifest, std::regex("\\nn_predict += \\[[^\\]]*\\]"), "\nn_predict = [8, 16]");
    manifest = std::regex_replace(manifest, std::regex("\\nlimit += 1"), "\nlimit = 1\ncategories = [\"animals\", \"family\", \"lessons\"]");
    ASSERT_NE(manifest.find("n_predict = [8, 16]"), std::string::npos);
    ASSERT_NE(manifest.find("categories = ["), std::string::npos);
    {
        std::ofstream(tmp / "panel.toml") << manifest;
    }
    const std::string db = (tmp / "panel.duckdb").string();
    auto r = run_phasemap({"panel", "run", (tmp / "panel.toml").string(), "--db", db, "-q"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = run_phasemap({"control-audit", "-q", "-m", stories.string(), "--prompts", (ex / "demo_prompts.txt").string(), "--intervene",
                      "noise:block:2:0.5@seed=3", "-n", "12", "--bootstrap", "200", "--db", db});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = run_phasemap({"monitor-eval", "-q", "-m", stories.string(), "--data", (ex / "demo_qa.csv").string(), "-n", "12", "--bootstrap",
                      "200", "--db", db});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const fs::path html = out_dir() / "report-demo.html";
    r = run_phasemap({"report", "-q", db, "--hypotheses", (ex / "demo_hypotheses.toml").string(), "-o", html.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string page = slurp(html);
    expect_self_contained(page);
    expect_tidy(page_data(page)["sections"]);
    auto s = open_page(chrome, html, out_dir() / "report-demo.png");
    ASSERT_TRUE(s.j.is_object());
    const std::vector<std::string> figs = {"phase-map", "phase-map-category", "trajectories", "layer-depth", "layer-profiles",
                                           "audit-normalisation", "audit-variance", "audit-topology", "audit-cycles",
                                           "audit-transitions", "audit-dwell", "audit-robustness", "audit-predictor", "audit-roc", "audit-variants",
                                           "control-audit", "monitor-arms"};
    expect_rendered(s, figs.size());
    EXPECT_EQ(s.j["missing"].size(), 0u) << s.j["missing"].dump();
    for (const auto& f : figs) EXPECT_GT(s.j["figures"].value(f, 0), 0) << f;
    // No table cell of the rendered page starts with { or [ (the control / monitor results'
    // tables included).
    ASSERT_NE(s.dom.find("id=\"fig-control-audit\""), std::string::npos);
    const std::string& checked = s.dom;
    static const std::regex td("<td[^>]*>([^<]*)</td>");
    size_t cells = 0;
    for (auto it = std::sregex_iterator(checked.begin(), checked.end(), td); it != std::sregex_iterator(); ++it, ++cells) {
        const std::string t = unescape_html((*it)[1].str());
        EXPECT_TRUE(t.empty() || (t[0] != '{' && t[0] != '[')) << t;
    }
    EXPECT_GT(cells, 500u);
    // The random-weight models say so in the tables and in the figures' legends and axes.
    EXPECT_NE(s.dom.find("<td>gpt2-tiny (random weights)</td>"), std::string::npos);
    EXPECT_NE(s.dom.find(">random weights</text>"), std::string::npos);
    // One normalisation mode at a time, with a selector for the other.
    EXPECT_NE(s.dom.find("normalisation "), std::string::npos);
}

}  // namespace
#endif

// MoE routing section: per model, the median over its routed runs of each run-level routing
// metric, one normalisation mode only; dense runs (no routing values) are left out; a panel
// without routed runs gets no section (dense reports are unchanged).
TEST(ReportData, RoutingSectionOnlyForRoutedRuns) {
    phasemap::PanelTable p;
    for (const auto& m : {"moe", "dense"}) p.models.push_back({.label = m});
    int k = 0;
    auto add = [&](const std::string& model, const std::string& norm, double switch_rate, double nmi) {
        phasemap::PanelRun r;
        r.run_id = "run" + std::to_string(k);
        r.model = model;
        r.category = "c";
        r.prompt = "prompt " + std::to_string(k);
        r.seed = static_cast<uint64_t>(k++);
        r.norm = norm;
        r.metrics["ratio_norm"] = 1.5;
        r.metrics["expert_switch_rate"] = switch_rate;
        r.metrics["routing_layer_nmi"] = nmi;
        p.runs.push_back(r);
    };
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (const auto& norm : {"raw", "clipped_mad"}) {   // the same three generations under two modes
        add("moe", norm, 0.25, 0.5);
        add("moe", norm, 0.75, nan);   // NMI missing in one run: the median of the others
        add("moe", norm, 0.5, 0.7);
        add("dense", norm, nan, nan);
    }
    phasemap::report::Inputs in;
    in.panel = p;
    const auto d = phasemap::report::build_data(in, {});
    const json* sec = nullptr;
    for (const auto& s : d["sections"])
        if (s["id"] == "routing") sec = &s;
    ASSERT_NE(sec, nullptr);
    const json& t = (*sec)["items"][0];
    ASSERT_EQ(t["kind"], "table");
    const auto& cols = t["columns"];
    auto col = [&](const std::string& name) {
        const auto it = std::find(cols.begin(), cols.end(), json(name));
        EXPECT_NE(it, cols.end()) << name;
        return size_t(it - cols.begin());
    };
    ASSERT_EQ(t["rows"].size(), 1u);   // the dense model has no routed run
    const json& row = t["rows"][0];
    EXPECT_EQ(row[0], "moe");
    EXPECT_EQ(row[col("routed runs")], 3);   // one normalisation mode: each generation once
    EXPECT_DOUBLE_EQ(row[col("expert_switch_rate (median)")].get<double>(), 0.5);
    EXPECT_DOUBLE_EQ(row[col("routing_layer_nmi (median)")].get<double>(), 0.6);
    EXPECT_TRUE(row[col("expert_load_entropy (median)")].is_null());   // no run has it

    phasemap::PanelTable dense;
    dense.models.push_back({.label = "dense"});
    for (auto r : p.runs)
        if (r.model == "dense") dense.runs.push_back(r);
    in.panel = dense;
    const auto dd = phasemap::report::build_data(in, {});   // kept: a range-for over a temporary's member dangles
    for (const auto& s : dd["sections"]) EXPECT_NE(s["id"], "routing");
}
