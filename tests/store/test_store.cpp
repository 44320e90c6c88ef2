// Results store: schema, atomic run commits, reopen, schema-version and lock errors, Parquet
// export, merge (idempotent, refuses mixed manifests), PanelTable loading.
#include <algorithm>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "phasemap/metrics/analyze.hpp"
#include "phasemap/store/store.hpp"
#include "store/testing.hpp"  // src/store: set_meta_for_test
#include "support/paths.hpp"

extern char** environ;

using namespace phasemap;
using namespace phasemap::store;

namespace {

// A synthetic run: T tokens, 3 layers, d = 8, random states and plausible stats.
struct Synth {
    std::vector<float> states;
    std::vector<metrics::TokenProbStats> stats;
    std::vector<std::string> names{"hf:1", "hf:2", "hf:3"};
    metrics::RunSummary summary;
    std::vector<TokenData> tokens;
    Synth(size_t T, uint64_t seed) {
        std::mt19937_64 g(seed);
        std::normal_distribution<float> nd;
        states.resize(T * 3 * 8);
        for (auto& x : states) x = nd(g);
        std::uniform_real_distribution<double> u(0.05, 0.99);
        for (size_t t = 0; t < T; ++t) {
            metrics::TokenProbStats s;
            s.top1 = u(g);
            s.margin = s.top1 / 2;
            s.entropy = 3 * (1 - s.top1);
            s.surprisal = -std::log(s.top1);
            stats.push_back(s);
            tokens.push_back({int32_t(100 + t), "tok" + std::to_string(t), int64_t(5 + t)});
        }
        summary = metrics::analyze_run({states.data(), T, 3, 8, names}, stats);
    }
};

RunRow row(const std::string& id, const std::string& model = "m1") {
    RunRow r;
    r.run_id = id;
    r.model = model;
    r.category = "cat";
    r.prompt = "hello";
    r.prompt_text = "hello";
    r.temperature = 0.5;
    r.seed = 7;
    r.n_predict = 12;
    r.layers = "hf:all";
    r.precision = "exact";
    r.norm = "raw";
    r.metric_options = "{}";
    r.n_generated = 12;
    r.stop_reason = "length";
    r.text = "generated's text";
    return r;
}

ModelRow model(const std::string& label, const std::string& sha = "abc") {
    ModelRow m;
    m.label = label;
    m.path = "/x/" + label + ".gguf";
    m.sha256 = sha;
    m.architecture = "llama";
    m.gguf_architecture = "llama";
    m.covariates = {{"training_loss", 1.5}};
    m.n_layer = 2;
    return m;
}

}  // namespace

TEST(Store, CreatesSchemaAndCommitsRuns) {
    pmtest::TempDir d;
    const auto p = d / "r.duckdb";
    {
        auto s = Store::open(p, {.manifest_hash = "h1"});
        EXPECT_EQ(s->meta().at("schema_version"), std::to_string(kSchemaVersion));
        EXPECT_EQ(s->meta().at("manifest_hash"), "h1");
        s->put_model(model("m1"));
        s->put_model(model("m1"));  // same file: no-op
        EXPECT_THROW(s->put_model(model("m1", "other")), StoreError);
        Synth a(12, 1), b(9, 2);
        s->commit_run(row("r1"), a.summary, a.tokens);
        s->commit_run(row("r2"), b.summary, b.tokens);
        EXPECT_EQ(s->count("runs"), 2);
        EXPECT_EQ(s->count("tokens"), 21);
        // The same run id again violates the primary key: the whole transaction is rolled back.
        EXPECT_THROW(s->commit_run(row("r1"), a.summary, a.tokens), StoreError);
        EXPECT_EQ(s->count("tokens"), 21);
    }
    auto s = Store::open(p, {.read_only = true});
    EXPECT_EQ(s->run_ids(), (std::set<std::string>{"r1", "r2"}));
    // Metric columns hold the summary's values; per-token rows the per-token metrics.
    Synth a(12, 1);
    const auto rows = s->rows("SELECT ratio_norm, late_ct, regime, text FROM runs WHERE run_id = 'r1'");
    ASSERT_EQ(rows.size(), 1u);
    ASSERT_TRUE(a.summary.token.ratio_norm.ok());
    EXPECT_NEAR(std::stod(rows[0].substr(0, rows[0].find('\t'))), a.summary.token.ratio_norm.v, 1e-12);
    EXPECT_NE(rows[0].find("generated's text"), std::string::npos);
    const auto ct = s->rows("SELECT t, ct_t, entropy, token_text FROM tokens WHERE run_id = 'r1' ORDER BY t");
    ASSERT_EQ(ct.size(), 12u);
    EXPECT_EQ(ct[0], "0\t\\N\t" + s->rows("SELECT entropy FROM tokens WHERE run_id='r1' AND t=0")[0] + "\ttok0");
    EXPECT_NEAR(std::stod(ct[2].substr(2)), a.summary.token.series.ct[0], 1e-12);
    // PanelTable.
    const PanelTable pt = s->panel_table();
    ASSERT_EQ(pt.models.size(), 1u);
    EXPECT_EQ(pt.models[0].covariates.at("training_loss"), 1.5);
    ASSERT_EQ(pt.runs.size(), 2u);
    EXPECT_EQ(pt.runs[0].model, "m1");
    EXPECT_EQ(pt.runs[0].seed, 7u);
    EXPECT_NEAR(pt.runs[0].metrics.at("ratio_norm"), a.summary.token.ratio_norm.v, 1e-12);
    for (const char* k : {"late_ct", "collapse", "collapse_rate", "steady_rate", "perplexity", "mean_ct", "median_tortuosity"})
        EXPECT_TRUE(pt.runs[0].metrics.count(k)) << k;
    EXPECT_EQ(load_panel_table(p).runs.size(), 2u);
}

// A generation group (its normalisations) goes in with one transaction; a run already stored is
// left as it is, so a group stored in part is completed and a second commit writes nothing.
TEST(Store, CommitGroupWritesEachRunOnceAndCompletesAGroupStoredInPart) {
    pmtest::TempDir d;
    const auto p = d / "r.duckdb";
    Synth a(12, 1), b(9, 2);
    RunRow r1 = row("g-raw"), r2 = row("g-mad");
    r2.norm = "clipped_mad";
    const std::vector<LayerTokenData> none;
    {
        auto s = Store::open(p, {.manifest_hash = "h1"});
        s->put_model(model("m1"));
        s->commit_run(r1, a.summary, a.tokens);  // as the runner before the fix left it: one row of the two
        EXPECT_EQ(s->commit_group({{&r1, &a.summary, &a.tokens, &none}, {&r2, &b.summary, &b.tokens, nullptr}}), 1u);
        EXPECT_EQ(s->count("runs"), 2);
        EXPECT_EQ(s->count("tokens"), 12 + 9);
        EXPECT_EQ(s->commit_group({{&r1, &a.summary, &a.tokens, &none}, {&r2, &b.summary, &b.tokens, nullptr}}), 0u);
        EXPECT_EQ(s->count("runs"), 2);
        EXPECT_EQ(s->count("tokens"), 12 + 9);
        EXPECT_EQ(s->commit_group({}), 0u);
    }
    auto ro = Store::open(p, {.read_only = true});
    EXPECT_THROW(ro->commit_group({{&r1, &a.summary, &a.tokens, nullptr}}), StoreError);
}

TEST(Store, ColumnsFollowTheRegistry) {
    const auto& rc = run_metric_columns();
    for (const char* k : {"ratio_norm", "late_ct", "collapse", "exit_rate", "collapse_rate", "perplexity", "median_ct_t",
                          "median_path_length", "median_mean_turning_angle_rad"})
        EXPECT_NE(std::find(rc.begin(), rc.end(), k), rc.end()) << k;
    const auto& tc = token_metric_columns();
    for (const char* k : {"delta_t", "curvature_t", "ct_t", "entropy", "top1", "margin", "surprisal", "tortuosity"})
        EXPECT_NE(std::find(tc.begin(), tc.end(), k), tc.end()) << k;
}

TEST(Store, RefusesOtherSchemaVersionAndOtherManifestWithoutWriting) {
    pmtest::TempDir d;
    const auto p = d / "r.duckdb";
    { Store::open(p, {.manifest_hash = "h1"}); }
    set_meta_for_test(p, "schema_version", "999");
    const auto before = fs::last_write_time(p);
    const auto size = fs::file_size(p);
    try {
        Store::open(p, {.manifest_hash = "h1"});
        FAIL() << "expected StoreError";
    } catch (const StoreError& e) {
        EXPECT_NE(std::string(e.what()).find("schema version 999"), std::string::npos) << e.what();
    }
    EXPECT_EQ(fs::last_write_time(p), before);
    EXPECT_EQ(fs::file_size(p), size);
    set_meta_for_test(p, "schema_version", std::to_string(kSchemaVersion));
    try {
        Store::open(p, {.manifest_hash = "h2"});
        FAIL() << "expected StoreError";
    } catch (const StoreError& e) {
        EXPECT_NE(std::string(e.what()).find("another panel manifest"), std::string::npos) << e.what();
    }
    // Not a DuckDB file / missing file.
    { std::ofstream(d / "junk.duckdb") << "this is not a database"; }
    EXPECT_THROW(Store::open(d / "junk.duckdb", {.manifest_hash = "h1"}), StoreError);
    EXPECT_THROW(Store::open(d / "missing.duckdb", {.read_only = true}), StoreError);
    EXPECT_THROW(Store::open(d / "no-dir" / "x.duckdb", {}), StoreError);
}

TEST(Store, LockedByAnotherProcess) {
    pmtest::TempDir d;
    const auto p = d / "r.duckdb";
    { Store::open(p, {.manifest_hash = "h1"}); }
    // Another process holds the same POSIX record lock DuckDB takes on its file.
    const std::string code = "import fcntl,sys,time\nf=open(sys.argv[1],'r+b')\nfcntl.lockf(f,fcntl.LOCK_EX)\n"
                             "open(sys.argv[2],'w').close()\ntime.sleep(30)\n";
    const std::string ready = (d / "ready").string();
    std::vector<std::string> args{"/usr/bin/python3", "-c", code, p.string(), ready};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ), 0);
    for (int i = 0; i < 200 && !fs::exists(ready); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    ASSERT_TRUE(fs::exists(ready));
    const auto size = fs::file_size(p);
    try {
        Store::open(p, {.manifest_hash = "h1"});
        ADD_FAILURE() << "expected StoreError";
    } catch (const StoreError& e) {
        EXPECT_NE(std::string(e.what()).find("locked by another process"), std::string::npos) << e.what();
    }
    EXPECT_EQ(fs::file_size(p), size);
    kill(pid, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    EXPECT_NO_THROW(Store::open(p, {.manifest_hash = "h1"}));
}

TEST(Store, ExportWritesOneParquetPerTableAtomically) {
    pmtest::TempDir d;
    auto s = Store::open(d / "r.duckdb", {.manifest_hash = "h1"});
    s->put_model(model("m1"));
    Synth a(6, 3);
    s->commit_run(row("r1"), a.summary, a.tokens);
    const auto tables = s->export_parquet(d / "pq");
    for (const char* t : {"meta", "models", "runs", "tokens", "token_layers"}) {
        EXPECT_TRUE(fs::is_regular_file(d / "pq" / (std::string(t) + ".parquet"))) << t;
        EXPECT_NE(std::find(tables.begin(), tables.end(), t), tables.end()) << t;
    }
    size_t files = 0;
    for (const auto& e : fs::directory_iterator(d / "pq")) files += e.path().extension() == ".parquet";
    EXPECT_EQ(files, tables.size()) << "the returned list names every file written";
    s->export_parquet(d / "pq");  // replaces a Parquet-only directory
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(d.path)) n += e.path().filename().string().starts_with(".pq") ? 1 : 0;
    EXPECT_EQ(n, 0u) << "temporary directories left behind";
    { std::ofstream(d / "pq" / "notes.txt") << "mine"; }
    EXPECT_THROW(s->export_parquet(d / "pq"), StoreError);
    EXPECT_TRUE(fs::exists(d / "pq" / "notes.txt"));
}

TEST(Store, MergeIsIdempotentAndRefusesMixedManifests) {
    pmtest::TempDir d;
    Synth a(6, 4), b(7, 5), c(8, 6);
    {
        auto s1 = Store::open(d / "s1.duckdb", {.manifest_hash = "h1", .meta = {{"shard", "1/2"}}});
        s1->put_model(model("m1"));
        s1->commit_run(row("r1"), a.summary, a.tokens);
        auto s2 = Store::open(d / "s2.duckdb", {.manifest_hash = "h1", .meta = {{"shard", "2/2"}}});
        s2->put_model(model("m1"));
        s2->commit_run(row("r2"), b.summary, b.tokens);
        s2->commit_run(row("r3"), c.summary, c.tokens);
        auto o = Store::open(d / "other.duckdb", {.manifest_hash = "h9"});
        o->commit_run(row("r9"), a.summary, a.tokens);
    }
    auto r = merge({d / "s1.duckdb", d / "s2.duckdb"}, d / "all.duckdb");
    EXPECT_EQ(r.runs_added, 3);
    r = merge({d / "s1.duckdb", d / "s2.duckdb"}, d / "all.duckdb");
    EXPECT_EQ(r.runs_added, 0);
    EXPECT_EQ(r.runs_present, 3);
    {
        auto s = Store::open(d / "all.duckdb", {.read_only = true});
        EXPECT_EQ(s->count("runs"), 3);
        EXPECT_EQ(s->count("tokens"), 21);
        EXPECT_EQ(s->count("models"), 1);
        EXPECT_EQ(s->meta().count("shard"), 0u);
        EXPECT_EQ(s->meta().at("manifest_hash"), "h1");
    }
    try {
        merge({d / "s1.duckdb", d / "other.duckdb"}, d / "x.duckdb");
        FAIL() << "expected StoreError";
    } catch (const StoreError& e) {
        EXPECT_NE(std::string(e.what()).find("different panel manifests"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(d / "x.duckdb"));
    EXPECT_THROW(merge({d / "other.duckdb"}, d / "all.duckdb"), StoreError);  // output holds manifest h1
    EXPECT_EQ(Store::open(d / "all.duckdb", {.read_only = true})->count("runs"), 3);
}

TEST(Store, InvalidUtf8TokenTextIsStoredAsReplacementCharacters) {
    pmtest::TempDir d;
    auto s = Store::open(d / "r.duckdb", {.manifest_hash = "h1"});
    Synth a(4, 7);
    a.tokens[0].text = "\xe4\xbd";         // first two bytes of a three-byte character (byte-level BPE)
    a.tokens[1].text = "ok \xff end";
    RunRow r = row("r1");
    r.text = std::string("caf\xc3", 4);
    s->commit_run(r, a.summary, a.tokens);
    EXPECT_EQ(s->rows("SELECT token_text FROM tokens ORDER BY t LIMIT 2"),
              (std::vector<std::string>{"\xef\xbf\xbd\xef\xbf\xbd", "ok \xef\xbf\xbd end"}));
    EXPECT_EQ(s->rows("SELECT text FROM runs")[0], "caf\xef\xbf\xbd");
    EXPECT_EQ(s->rows("SELECT token_id FROM tokens ORDER BY t LIMIT 1")[0], "100");
}

TEST(Store, TokenLayersHoldEveryLayersSeriesAlignedToTokens) {
    pmtest::TempDir d;
    auto s = Store::open(d / "r.duckdb");
    Synth a(6, 3);
    LayerTokenData l1{"hf:1", {}, {}, {}}, l2{"hf:2", {}, {}, {}};
    for (size_t t = 0; t < 6; ++t) {
        l1.delta_t.push_back(t >= 1 ? 0.5 * double(t) : std::nan(""));
        l1.curvature_t.push_back(t >= 2 ? 0.1 : std::nan(""));
        l1.ct_t.push_back(t >= 2 ? 0.05 * double(t) : std::nan(""));
        l2.ct_t.push_back(double(t));
    }
    l2.ct_t.pop_back();  // a short series: the missing tail is NULL
    s->commit_run(row("r1"), a.summary, a.tokens, {l1, l2});
    EXPECT_EQ(s->count("token_layers"), 12);
    EXPECT_EQ(s->rows("SELECT t, delta_t, ct_t FROM token_layers WHERE layer = 'hf:1' ORDER BY t LIMIT 3"),
              (std::vector<std::string>{"0\t\\N\t\\N", "1\t0.5\t\\N", "2\t1.0\t0.1"}));
    EXPECT_EQ(s->rows("SELECT ct_t FROM token_layers WHERE layer = 'hf:2' AND t = 5"), (std::vector<std::string>{"\\N"}));
    // A run without layer series writes none; a failing run writes neither its tokens nor its layers.
    Synth b(4, 4);
    s->commit_run(row("r2"), b.summary, b.tokens);
    EXPECT_EQ(s->count("token_layers"), 12);
    EXPECT_THROW(s->commit_run(row("r1"), a.summary, a.tokens, {l1}), StoreError);
    EXPECT_EQ(s->count("token_layers"), 12);
}

TEST(Store, ResultDocumentsAreStoredWholeAndAsTables) {
    pmtest::TempDir d;
    const auto p = d / "r.duckdb";
    using nlohmann::json;
    const json data = {
        {"share", 0.25},
        {"ci", {{"lo", 0.1}, {"hi", 0.4}}},
        {"label", "ADAPTIVE"},
        {"per_model",
         {{{"model", "a"}, {"n", 3}, {"median", 1.5}, {"robust", true}, {"runs", {1, 2}}},
          {{"model", "b"}, {"n", 4}, {"median", nullptr}, {"robust", false}},
          {{"model", "c"}, {"n", 5}, {"median", 2}, {"extra", "x"}}}},
        {"empty", json::array()},
    };
    {
        auto s = Store::open(p);
        EXPECT_TRUE(s->audits().empty());
        s->put_audits({{.kind = "audit", .name = "variance", .options = {{"bootstrap", 10}}, .data = data, .source = "x.duckdb"},
                       {.kind = "audit", .name = "topology", .ok = false, .reason = "one model only", .data = json::object()}});
    }
    auto s = Store::open(p, {.read_only = true});
    const auto all = s->audits();
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].name, "variance");
    EXPECT_TRUE(all[0].ok);
    EXPECT_EQ(all[0].data, data);
    EXPECT_EQ(all[0].options["bootstrap"], 10);
    EXPECT_EQ(all[0].source, "x.duckdb");
    EXPECT_EQ(all[0].tables, (std::vector<std::string>{"audit_variance_per_model"}));
    EXPECT_FALSE(all[0].created_at.empty());
    EXPECT_FALSE(all[1].ok);
    EXPECT_EQ(all[1].reason, "one model only");
    // Columns typed from the values; a key missing in a row is NULL.
    EXPECT_EQ(s->rows("SELECT model, n, median, robust, runs, extra FROM audit_variance_per_model ORDER BY model"),
              (std::vector<std::string>{"a\t3\t1.5\ttrue\t[1,2]\t\\N", "b\t4\t\\N\tfalse\t\\N\t\\N", "c\t5\t2.0\t\\N\t\\N\tx"}));
    EXPECT_EQ(s->rows("SELECT column_name || ' ' || data_type FROM information_schema.columns "
                      "WHERE table_name = 'audit_variance_per_model' ORDER BY column_name"),
              (std::vector<std::string>{"extra VARCHAR", "median DOUBLE", "model VARCHAR", "n BIGINT", "robust BOOLEAN",
                                        "runs VARCHAR"}));
    EXPECT_EQ(s->rows("SELECT path, value_text, value_number FROM audit_values WHERE name = 'variance' ORDER BY path"),
              (std::vector<std::string>{"ci.hi\t0.4\t0.4", "ci.lo\t0.1\t0.1", "empty\t[]\t\\N", "label\tADAPTIVE\t\\N",
                                        "share\t0.25\t0.25"}));
    EXPECT_EQ(s->audits("control_audit").size(), 0u);
    // Storing needs a writable DB.
    EXPECT_THROW(s->put_audits({{.kind = "audit", .name = "x", .data = data}}), StoreError);
}

TEST(Store, StoringAResultAgainReplacesItsRowsAndTables) {
    pmtest::TempDir d;
    const auto p = d / "r.duckdb";
    using nlohmann::json;
    auto s = Store::open(p);
    const json v1 = {{"rows", {{{"a", 1}}, {{"a", 2}}}}, {"x", 1}};
    const json v2 = {{"other", {{{"b", "q"}}}}, {"x", 2}};
    s->put_audits({{.kind = "control_audit", .name = "Run 1", .data = v1}});
    s->put_audits({{.kind = "monitor_eval", .name = "values", .data = v1}});
    EXPECT_EQ(s->count("control_run_1_rows"), 2);
    EXPECT_EQ(s->count("monitor_values_rows"), 2);
    s->put_audits({{.kind = "control_audit", .name = "Run 1", .data = v2}});
    const auto c = s->audits("control_audit");
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].data, v2);
    EXPECT_EQ(c[0].tables, (std::vector<std::string>{"control_run_1_other"}));
    EXPECT_EQ(s->rows("SELECT count(*) FROM information_schema.tables WHERE table_name = 'control_run_1_rows'"),
              (std::vector<std::string>{"0"}));
    EXPECT_EQ(s->rows("SELECT value_text FROM audit_values WHERE kind = 'control_audit'"), (std::vector<std::string>{"2"}));
    EXPECT_EQ(s->count("monitor_values_rows"), 2);  // other results untouched
    // An unknown kind and an unnamed result are refused, and nothing of the batch is kept.
    EXPECT_THROW(s->put_audits({{.kind = "audit", .name = "ok", .data = v1}, {.kind = "nope", .name = "y", .data = v1}}),
                 StoreError);
    EXPECT_THROW(s->put_audits({{.kind = "audit", .name = "", .data = v1}}), StoreError);
    EXPECT_EQ(s->audits("audit").size(), 0u);
    // Result tables are exported with the run tables.
    s.reset();
    Store::open(p, {.read_only = true})->export_parquet(d / "pq");
    for (const char* f : {"meta", "models", "runs", "tokens", "token_layers", "audits", "audit_values", "control_run_1_other",
                          "monitor_values_rows"})
        EXPECT_TRUE(fs::exists(d / "pq" / (std::string(f) + ".parquet"))) << f;
}

TEST(Store, RunsCarryDwellAndTransitionCountsForTheCycleAudit) {
    pmtest::TempDir d;
    const auto p = d / "r.duckdb";
    Synth a(40, 11);
    ASSERT_TRUE(a.summary.output.has_value());
    {
        auto s = Store::open(p);
        s->commit_run(row("r1"), a.summary, a.tokens);
    }
    // Recount from the stored per-token states: transitions between consecutive tokens and the
    // mean length of each state's maximal runs.
    auto s = Store::open(p, {.read_only = true});
    const auto states = s->rows("SELECT output_state FROM tokens WHERE run_id = 'r1' ORDER BY t");
    ASSERT_EQ(states.size(), 40u);
    std::map<std::string, double> trans, runs, lens;
    for (size_t t = 0; t + 1 < states.size(); ++t) trans[states[t] + "_" + states[t + 1]] += 1;
    for (size_t t = 0; t < states.size(); ++t) {
        if (t == 0 || states[t] != states[t - 1]) runs[states[t]] += 1;
        lens[states[t]] += 1;
    }
    const PanelTable pt = s->panel_table();
    ASSERT_EQ(pt.runs.size(), 1u);
    const auto& m = pt.runs[0].metrics;
    double total = 0;
    for (const char* a : {"COLLAPSE", "RIVALRY", "DIFFUSE", "STEADY"}) {
        for (const char* b : {"COLLAPSE", "RIVALRY", "DIFFUSE", "STEADY"}) {
            const std::string k = std::string(a) + "_" + b;
            EXPECT_EQ(m.at("transition_" + k), trans.count(k) ? trans[k] : 0.0) << k;
            total += m.at("transition_" + k);
        }
        if (runs.count(a)) EXPECT_DOUBLE_EQ(m.at(std::string("dwell_mean_") + a), lens[a] / runs[a]) << a;
        else EXPECT_TRUE(std::isnan(m.at(std::string("dwell_mean_") + a))) << a;
    }
    EXPECT_EQ(total, 39);
}

TEST(Store, LayerProfilesAggregatePerModelAndLayerOverTokensOfOneNorm) {
    pmtest::TempDir d;
    auto s = Store::open(d / "r.duckdb");
    EXPECT_TRUE(s->layer_profiles().empty());  // no token_layers rows
    const double N = std::nan("");
    // Hand-made per-layer series: {layer, delta_t, curvature_t, ct_t, speed, turning_angle_rad}.
    auto commit = [&](const std::string& id, const std::string& model, const std::string& norm, size_t T,
                      const std::vector<LayerTokenData>& layers) {
        Synth a(T, 40 + id.size());
        RunRow r = row(id, model);
        r.norm = norm;
        s->commit_run(r, a.summary, a.tokens, layers);
    };
    // Labels deliberately out of order: hf:10 after hf:2 numerically, block:1 (= depth 2) after hf:2.
    commit("r1", "m1", "raw", 4,
           {{"hf:10", {}, {}, {}, {10, 10, 10, 10}, {}},
            {"hf:2", {}, {}, {N, N, 1, 2}, {1, 2, 3, 4}, {0.5, 0.5, 0.5, 0.5}},
            {"block:1", {}, {}, {}, {7, 7, 7, 7}, {}},
            {"hf:0", {}, {}, {N, N, 0.1, 0.3}, {N, N, N, N}, {N, N, N, N}}});
    commit("r2", "m1", "raw", 5,
           {{"hf:0", {}, {}, {N, N, 0.2, 0.4, 0.6}, {}, {}},
            {"hf:2", {}, {}, {}, {5, 6, 7, 8, 9}, {1.5, 1.5, 1.5, 1.5, 1.5}},
            {"hf:10", {}, {}, {}, {20, 20, 20, 20, 20}, {}},
            {"block:1", {}, {}, {}, {}, {}}});
    commit("r3", "m2", "raw", 2, {{"hf:2", {}, {}, {}, {100, 200}, {}}});
    // A model with L = 3 blocks: block:2 (the last block's output, before the final norm) and
    // hf:3 (after it) are different states at different depths; a component sits inside its block.
    ModelRow m3 = model("m3");
    m3.n_layer = 3;
    s->put_model(m3);
    commit("r8", "m3", "raw", 2,
           {{"hf:3", {}, {}, {}, {1, 1}, {}}, {"block:2", {}, {}, {}, {2, 2}, {}}, {"attn_out:1", {}, {}, {}, {3, 3}, {}},
            {"hf:1", {}, {}, {}, {4, 4}, {}}});
    // Another normalisation: more runs in all, but only one with token_layers rows.
    commit("r4", "m1", "unit", 1, {{"hf:2", {}, {}, {}, {1000}, {}}});
    for (const char* id : {"r5", "r6", "r7"}) commit(id, "m1", "unit", 3, {});

    const auto p = s->layer_profiles();
    ASSERT_EQ(p.size(), 9u);
    std::vector<std::string> order;
    for (const auto& r : p) {
        std::ostringstream o;
        o << r.model << " " << r.layer << " " << r.depth;
        order.push_back(o.str());
    }
    EXPECT_EQ(order, (std::vector<std::string>{"m1 hf:0 0", "m1 hf:2 2", "m1 block:1 2", "m1 hf:10 10", "m2 hf:2 2", "m3 hf:1 1",
                                               "m3 attn_out:1 1.25", "m3 block:2 3", "m3 hf:3 3.5"}));
    for (const auto& r : p) EXPECT_EQ(r.norm, "raw");
    // m1 hf:0: no speed at all; ct_t over both runs' tokens {0.1, 0.3, 0.2, 0.4, 0.6}.
    EXPECT_EQ(p[0].runs, 2);
    EXPECT_EQ(p[0].speed.n, 0);
    EXPECT_TRUE(std::isnan(p[0].speed.median));
    EXPECT_EQ(p[0].ct_t.n, 5);
    EXPECT_NEAR(p[0].ct_t.median, 0.3, 1e-12);
    EXPECT_NEAR(p[0].ct_t.q1, 0.2, 1e-12);
    EXPECT_NEAR(p[0].ct_t.q3, 0.4, 1e-12);
    // m1 hf:2: speed over 1..9 (both runs), turns four of 0.5 and five of 1.5.
    EXPECT_EQ(p[1].speed.n, 9);
    EXPECT_DOUBLE_EQ(p[1].speed.median, 5);
    EXPECT_DOUBLE_EQ(p[1].speed.q1, 3);
    EXPECT_DOUBLE_EQ(p[1].speed.q3, 7);
    EXPECT_EQ(p[1].turning_angle_rad.n, 9);
    EXPECT_DOUBLE_EQ(p[1].turning_angle_rad.median, 1.5);
    EXPECT_DOUBLE_EQ(p[1].turning_angle_rad.q1, 0.5);
    EXPECT_EQ(p[1].ct_t.n, 2);
    EXPECT_DOUBLE_EQ(p[1].ct_t.median, 1.5);
    // block:1 has values in one run only; the run count still names both runs' rows.
    EXPECT_EQ(p[2].speed.n, 4);
    EXPECT_EQ(p[2].runs, 2);
    EXPECT_DOUBLE_EQ(p[3].speed.median, 20);  // 4 × 10, 5 × 20
    // m2: interpolated quartiles of {100, 200}.
    EXPECT_EQ(p[4].runs, 1);
    EXPECT_DOUBLE_EQ(p[4].speed.median, 150);
    EXPECT_DOUBLE_EQ(p[4].speed.q1, 125);
    EXPECT_DOUBLE_EQ(p[4].speed.q3, 175);
    // An explicit norm.
    const auto u = s->layer_profiles("unit");
    ASSERT_EQ(u.size(), 1u);
    EXPECT_EQ(u[0].model, "m1");
    EXPECT_EQ(u[0].norm, "unit");
    EXPECT_DOUBLE_EQ(u[0].speed.median, 1000);
    EXPECT_TRUE(s->layer_profiles("none-such").empty());
}
