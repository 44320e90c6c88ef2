// The panel runner end to end through the CLI: 2 models × 2 categories × 2 temperatures × 2 seeds
// into a DuckDB, Parquet into pandas, resume after kill -9 at three seeded moments, batched ==
// sequential greedy, shards + merge, bad input, quantize, Slurm script.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <fstream>
#include <random>
#include <thread>

#include "phasemap/modelgen/modelgen.hpp"
#include "phasemap/store/store.hpp"
#include "store/testing.hpp"  // src/store: set_meta_for_test
#include "support/paths.hpp"
#include "support/rows.hpp"

extern char** environ;

using namespace phasemap;
namespace fs = std::filesystem;

namespace {

// Shared fixture files for the whole test program: a random-weight tiny qwen2 model.
struct Files {
    pmtest::TempDir dir;
    fs::path stories, tiny;
    std::string skip;
    Files() {
        stories = pmtest::shared_model("stories260K.gguf");
        if (stories.empty()) skip = "../shared/models/stories260K.gguf is not present";
        const fs::path vocab = pmtest::llama_src_dir() / "models";
        if (!fs::is_directory(vocab)) {
            skip = "llama.cpp vocab files not found";
            return;
        }
        tiny = dir / "tiny-qwen2.gguf";
        modelgen::write_random_model(modelgen::preset("qwen2", "tiny"), vocab, tiny);
    }
};
Files& files() {
    static Files f;
    return f;
}
#define NEED_FILES()                                  \
    Files& F = files();                               \
    if (!F.skip.empty()) GTEST_SKIP() << F.skip

std::string manifest(const Files& f, const std::string& extra_gen, bool two_models = true, const std::string& cats = R"("animals", "family")",
                     int limit = 1) {
    // Defaults of the generation axes, unless `extra_gen` sets them (it may add further tables).
    std::string gen;
    for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
             {"temperatures", "[0.0, 0.8]"}, {"n_predict", "6"}, {"seeds", "[1, 2]"}})
        if (extra_gen.find(k + " =") == std::string::npos) gen += k + " = " + v + "\n";
    std::string s = "name = \"test\"\n[generation]\n" + gen + extra_gen +
                    "\n[[models]]\nlabel = \"stories\"\npath = \"" + f.stories.string() + "\"\nfamily = \"tinystories\"\n";
    if (two_models)
        s += "[[models]]\nlabel = \"tiny\"\npath = \"" + f.tiny.string() + "\"\narchitecture = \"qwen2-random\"\n"
             "covariates = { size_m = 9.9 }\n";
    s += "[[prompts]]\nbuiltin = \"stories\"\ncategories = [" + cats + "]\nlimit = " + std::to_string(limit) + "\n";
    return s;
}

fs::path write(const fs::path& p, const std::string& text) {
    std::ofstream(p) << text;
    return p;
}

pmtest::RunResult pm(std::vector<std::string> args) { return pmtest::run_phasemap(args); }

std::vector<std::string> rows(const fs::path& db, const std::string& sql) {
    return store::Store::open(db, {.read_only = true})->rows(sql);
}

// Rows that must agree between two DBs of the same panel.
std::vector<std::string> all_rows(const fs::path& db) {
    std::vector<std::string> out;
    for (const char* q : {"SELECT * FROM models ORDER BY label", "SELECT * FROM runs ORDER BY run_id",
                          "SELECT * FROM tokens ORDER BY run_id, t", "SELECT * FROM token_layers ORDER BY run_id, t, layer"})
        for (auto& r : rows(db, q)) out.push_back(std::move(r));
    return out;
}

// Every stored run has exactly n_generated token rows.
void expect_consistent(const fs::path& db) {
    const auto bad = rows(db, "SELECT r.run_id FROM runs r LEFT JOIN (SELECT run_id, count(*) n FROM tokens GROUP BY run_id) k "
                              "USING (run_id) WHERE coalesce(k.n, 0) <> r.n_generated");
    EXPECT_TRUE(bad.empty()) << "runs with missing token rows: " << bad.size();
    EXPECT_TRUE(rows(db, "SELECT run_id FROM tokens WHERE run_id NOT IN (SELECT run_id FROM runs) LIMIT 1").empty());
}

pid_t spawn(const std::vector<std::string>& args) {
    std::vector<std::string> a{pmtest::phasemap_binary().string()};
    a.insert(a.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? pid : -1;
}

}  // namespace

TEST(PanelRun, TwoModelsEndToEndWithParquetInPandas) {
    NEED_FILES();
    pmtest::TempDir d;
    const auto m = write(d / "panel.toml", manifest(F, ""));
    auto plan = pm({"panel", "plan", m.string()});
    ASSERT_EQ(plan.exit_code, 0) << plan.err;
    EXPECT_NE(plan.out.find("grid: 16 runs (16 generations), at most 96 generated tokens"), std::string::npos) << plan.out;

    const auto db = d / "r.duckdb";
    auto r = pm({"panel", "run", m.string(), "--db", db.string(), "--parallel", "4", "-t", "1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("16 runs written"), std::string::npos) << r.err;
    EXPECT_EQ(rows(db, "SELECT count(*) FROM runs")[0], "16");
    EXPECT_EQ(rows(db, "SELECT count(DISTINCT model), count(DISTINCT category), count(DISTINCT temperature), count(DISTINCT seed) FROM runs")[0],
              "2\t2\t2\t2");
    EXPECT_EQ(rows(db, "SELECT sum(n_generated) FROM runs")[0], rows(db, "SELECT count(*) FROM tokens")[0]);
    EXPECT_GT(std::stoi(rows(db, "SELECT count(*) FROM tokens")[0]), 16);
    expect_consistent(db);
    EXPECT_EQ(rows(db, "SELECT label, family, architecture, gguf_architecture, covariates FROM models ORDER BY label"),
              (std::vector<std::string>{"stories\ttinystories\tllama\tllama\t{}", "tiny\t\\N\tqwen2-random\tqwen2\t{\"size_m\":9.9}"}));
    // token_layers: every captured layer of every token (n_layer + 1 for hf:all), and the metric
    // layer's series there equals the tokens table's.
    EXPECT_EQ(rows(db, "SELECT count(*) FROM runs r JOIN models m ON r.model = m.label WHERE r.n_generated * (m.n_layer + 1) <> "
                       "(SELECT count(*) FROM token_layers k WHERE k.run_id = r.run_id)")[0], "0");
    EXPECT_EQ(rows(db, "SELECT count(*) FROM tokens k JOIN runs r USING (run_id) JOIN token_layers l ON l.run_id = k.run_id "
                       "AND l.t = k.t AND l.layer = r.metric_layer WHERE r.norm = 'raw' AND "
                       "(l.ct_t IS DISTINCT FROM k.ct_t OR l.delta_t IS DISTINCT FROM k.delta_t)")[0], "0");
    EXPECT_GT(std::stoi(rows(db, "SELECT count(*) FROM token_layers WHERE ct_t IS NOT NULL")[0]), 16);
    // The per-layer speeds of a token add up to its path length over the analysed layers (hf:1 …
    // hf:L, the embedding left out), and its turns average to its mean turning angle.
    EXPECT_EQ(rows(db, "SELECT count(*) FROM tokens k JOIN (SELECT run_id, t, sum(speed) s, avg(turning_angle_rad) a, "
                       "count(turning_angle_rad) n FROM token_layers WHERE layer <> 'hf:0' AND layer <> 'hf:1' GROUP BY ALL) l "
                       "USING (run_id, t) WHERE abs(l.s - k.path_length) > 1e-6 * k.path_length")[0], "0");
    EXPECT_EQ(rows(db, "SELECT count(*) FROM token_layers WHERE layer = 'hf:0' AND speed IS NOT NULL")[0], "0");
    // Greedy runs: no missing ratio_norm with 6 tokens (4 ct values), and ratio_norm in [1, n_ct].
    EXPECT_EQ(rows(db, "SELECT count(*) FROM runs WHERE n_generated = 6 AND (ratio_norm IS NULL OR ratio_norm < 1 OR ratio_norm > 4)")[0], "0");
    // A second run skips everything.
    r = pm({"panel", "run", m.string(), "--db", db.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("0 runs written, 16 skipped"), std::string::npos) << r.err;

    // Parquet: one file per table, loaded into pandas DataFrames.
    r = pm({"export", db.string(), "--parquet", (d / "pq").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto py = pmtest::run_command({"/usr/bin/python3", std::string(PHASEMAP_SOURCE_DIR) + "/tests/panel/parquet_pandas.py",
                                         PHASEMAP_DUCKDB_LIB_PATH, (d / "pq").string()});
    if (py.exit_code != 0 && py.err.find("No module named 'pandas'") != std::string::npos) GTEST_SKIP() << "python3-pandas missing";
    ASSERT_EQ(py.exit_code, 0) << py.err;
    const auto j = nlohmann::json::parse(py.out);
    EXPECT_EQ(j["runs"]["rows"], 16);
    EXPECT_EQ(j["models"]["rows"], 2);
    EXPECT_EQ(j["tokens"]["rows"].get<int>(), std::stoi(rows(db, "SELECT count(*) FROM tokens")[0]));
    std::vector<std::string> want_runs{"run_id", "model", "category", "prompt", "temperature", "seed", "n_predict", "text",
                                       "ratio_norm", "regime", "late_ct", "collapse", "collapse_rate", "rivalry_rate",
                                       "diffuse_rate", "steady_rate", "median_tortuosity", "perplexity", "states_path"};
    const auto cols = j["runs"]["columns"].get<std::vector<std::string>>();
    for (const auto& c : want_runs) EXPECT_NE(std::find(cols.begin(), cols.end(), c), cols.end()) << c;
    for (const auto& c : store::run_metric_columns()) EXPECT_NE(std::find(cols.begin(), cols.end(), c), cols.end()) << c;
    const auto tcols = j["tokens"]["columns"].get<std::vector<std::string>>();
    for (const char* c : {"run_id", "t", "token_id", "token_text", "position", "ct_t", "entropy", "top1", "margin", "surprisal", "output_state"})
        EXPECT_NE(std::find(tcols.begin(), tcols.end(), c), tcols.end()) << c;
    EXPECT_EQ(j["runs"]["dtypes"]["ratio_norm"], "float64");
    EXPECT_EQ(j["tokens"]["dtypes"]["t"], "int64");
}

TEST(PanelRun, ResumeAfterKill9EqualsUninterruptedRun) {
    NEED_FILES();
    pmtest::TempDir d;
    // 1 model × 6 categories × 2 prompts × 2 temperatures × 2 seeds = 48 runs of ≤ 16 tokens.
    const auto m = write(d / "panel.toml",
                         manifest(F, "n_predict = 16\n", false, R"("animals", "family", "friendship", "adventure", "feelings", "lessons")", 2));
    const auto ref = d / "ref.duckdb";
    const auto t0 = std::chrono::steady_clock::now();
    auto r = pm({"panel", "run", m.string(), "--db", ref.string(), "-t", "1", "-q"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const double full_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_EQ(rows(ref, "SELECT count(*) FROM runs")[0], "48");

    const auto db = d / "resumed.duckdb";
    std::mt19937_64 rng(20240521);
    std::uniform_real_distribution<double> frac(0.25, 0.6);
    int partial = 0;
    for (int k = 0; k < 3; ++k) {
        const auto delay = std::chrono::milliseconds(int64_t(frac(rng) * full_ms));
        const pid_t pid = spawn({"panel", "run", m.string(), "--db", db.string(), "-t", "1"});
        ASSERT_GT(pid, 0);
        std::this_thread::sleep_for(delay);
        kill(pid, SIGKILL);
        int st = 0;
        waitpid(pid, &st, 0);
        if (!fs::exists(db)) continue;  // killed before the DB was created
        expect_consistent(db);          // no half-written run
        const int n = std::stoi(rows(db, "SELECT count(*) FROM runs")[0]);
        partial += n > 0 && n < 48;
    }
    EXPECT_GE(partial, 1) << "no kill landed in the middle of the panel";
    r = pm({"panel", "run", m.string(), "--db", db.string(), "-t", "1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(all_rows(db), all_rows(ref));
}

// Both models, two categories × two prompts, greedy, one seed, 10 tokens: 8 runs.
fs::path greedy_panel(const Files& f, const pmtest::TempDir& d) {
    return write(d / "panel.toml", manifest(f, "temperatures = 0.0\nseeds = 1\nn_predict = 10\n", true, R"("animals", "family")", 2));
}

TEST(PanelRun, BatchedEqualsSequentialGreedy) {
    NEED_FILES();
    pmtest::TempDir d;
    const auto m = greedy_panel(F, d);
    const auto seq = d / "seq.duckdb", bat = d / "bat.duckdb";
    ASSERT_EQ(pm({"panel", "run", m.string(), "--db", seq.string(), "--parallel", "1", "-t", "1", "-q"}).exit_code, 0);
    ASSERT_EQ(pm({"panel", "run", m.string(), "--db", bat.string(), "--parallel", "4", "-t", "1", "-q"}).exit_code, 0);
    const char* ids = "SELECT run_id, n_generated, text, stop_reason FROM runs ORDER BY run_id";
    const char* toks = "SELECT run_id, t, token_id, token_text, position FROM tokens ORDER BY run_id, t";
    EXPECT_EQ(rows(seq, ids).size(), 8u);
    EXPECT_EQ(rows(seq, ids), rows(bat, ids));
    EXPECT_EQ(rows(seq, toks), rows(bat, toks));
    // The metrics agree up to the float32 differences of batched decoding.
    const auto a = store::load_panel_table(seq), b = store::load_panel_table(bat);
    ASSERT_EQ(a.runs.size(), b.runs.size());
    for (size_t i = 0; i < a.runs.size(); ++i)
        for (const char* k : {"ratio_norm", "late_ct", "median_tortuosity", "perplexity"}) {
            const double x = a.runs[i].metrics.at(k), y = b.runs[i].metrics.at(k);
            if (std::isnan(x)) EXPECT_TRUE(std::isnan(y));
            else EXPECT_NEAR(x, y, 1e-3 * std::max(1.0, std::abs(x))) << k << " run " << a.runs[i].run_id;
        }
}

// --output-stats graph: the statistics from ggml ops in the graph. The runs' tokens are the host
// reference's, the per-token statistics within 1e-6 relative (floor 1), and a bad value is one
// usage error naming the flag.
TEST(PanelRun, OutputStatsInTheGraphEqualTheHostReference) {
    NEED_FILES();
    pmtest::TempDir d;
    const auto m = greedy_panel(F, d);
    const auto host = d / "host.duckdb", graph = d / "graph.duckdb";
    ASSERT_EQ(pm({"panel", "run", m.string(), "--db", host.string(), "--parallel", "4", "-t", "1", "-q", "--output-stats", "host"}).exit_code, 0);
    ASSERT_EQ(pm({"panel", "run", m.string(), "--db", graph.string(), "--parallel", "4", "-t", "1", "-q", "--output-stats", "graph"}).exit_code, 0);
    const char* toks = "SELECT run_id, t, token_id, token_text, position, output_state FROM tokens ORDER BY run_id, t";
    EXPECT_EQ(rows(host, toks).size(), 80u);
    EXPECT_EQ(rows(host, toks), rows(graph, toks));
    const char* stats = "SELECT entropy, top1, margin, surprisal FROM tokens ORDER BY run_id, t";
    pmtest::expect_same_within(rows(host, stats), rows(graph, stats), 1e-6, "graph statistics against host");
    // Each run records where its statistics were computed (schema version 4).
    const char* where = "SELECT DISTINCT output_stats FROM runs";
    EXPECT_EQ(rows(host, where), std::vector<std::string>{"host"});
    EXPECT_EQ(rows(graph, where), std::vector<std::string>{"graph"});
    // Sampled runs keep the host path in graph mode, and say so; greedy ones of the same panel do not.
    const auto mixed = write(d / "mixed.toml", manifest(F, "temperatures = [0.0, 0.8]\nseeds = 1\nn_predict = 4\n", false));
    const auto mdb = d / "mixed.duckdb";
    ASSERT_EQ(pm({"panel", "run", mixed.string(), "--db", mdb.string(), "--parallel", "2", "-t", "1", "-q", "--output-stats", "graph"})
                  .exit_code,
              0);
    EXPECT_EQ(rows(mdb, "SELECT DISTINCT temperature, output_stats FROM runs ORDER BY ALL"),
              (std::vector<std::string>{"0.0\tgraph", "0.8\thost"}));
    const auto r = pm({"panel", "run", m.string(), "--db", (d / "bad.duckdb").string(), "--output-stats", "gpu"});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("--output-stats"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(d / "bad.duckdb"));
}

TEST(PanelRun, AutomaticContextIsSmallAndChangesNothing) {
    NEED_FILES();
    pmtest::TempDir d;
    // n_ctx = 0 sizes the context to the longest run (prompt + n_predict, rounded up to 256);
    // an explicit n_ctx is the old fixed size (at most the smallest training context, 128: a
    // larger one is refused). Greedy and sampled runs must come out identical.
    const std::string gen = "n_predict = 12\n";
    const auto a = write(d / "auto.toml", manifest(F, gen));
    const auto b = write(d / "fixed.toml", manifest(F, gen + "n_ctx = 128\n"));
    const auto da = d / "auto.duckdb", db = d / "fixed.duckdb";
    ASSERT_EQ(pm({"panel", "run", a.string(), "--db", da.string(), "--parallel", "4", "-q"}).exit_code, 0);
    ASSERT_EQ(pm({"panel", "run", b.string(), "--db", db.string(), "--parallel", "4", "-q"}).exit_code, 0);
    // The tiny qwen2 model: prompt + 12 tokens rounded up to 256 cells (its default: 512, the training context).
    // stories260K's GGUF declares a training context of 128, which caps it as it caps the default.
    EXPECT_EQ(rows(da, "SELECT DISTINCT n_ctx FROM runs WHERE model = 'tiny'"), std::vector<std::string>{"256"});
    EXPECT_EQ(rows(da, "SELECT DISTINCT n_ctx FROM runs WHERE model = 'stories'"), std::vector<std::string>{"128"});
    EXPECT_EQ(rows(db, "SELECT DISTINCT n_ctx FROM runs"), std::vector<std::string>{"128"});
    const std::string key = "model, prompt_index, temperature, seed, norm";
    const std::vector<std::string> same = {
        "SELECT * EXCLUDE (run_id, n_ctx) FROM runs ORDER BY " + key,
        "SELECT r.model, r.prompt_index, r.temperature, r.seed, r.norm, t.* EXCLUDE (run_id) FROM tokens t JOIN runs r USING (run_id) "
        "ORDER BY " + key + ", t.t",
        "SELECT r.model, r.prompt_index, r.temperature, r.seed, r.norm, l.* EXCLUDE (run_id) FROM token_layers l JOIN runs r "
        "USING (run_id) ORDER BY " + key + ", l.t, l.layer"};
    for (const auto& q : same) {
        const auto x = rows(da, q), y = rows(db, q);
        EXPECT_FALSE(x.empty()) << q;
        EXPECT_EQ(x, y) << q;
    }
}

TEST(PanelRun, ShardsMergeToTheSingleProcessDb) {
    NEED_FILES();
    pmtest::TempDir d;
    const auto m = write(d / "panel.toml", manifest(F, "", false));
    const auto single = d / "single.duckdb";
    ASSERT_EQ(pm({"panel", "run", m.string(), "--db", single.string(), "-t", "1", "-q"}).exit_code, 0);
    std::vector<std::string> merge{"merge"};
    for (int i = 1; i <= 3; ++i) {
        const auto s = d / ("s" + std::to_string(i) + ".duckdb");
        auto r = pm({"panel", "run", m.string(), "--db", s.string(), "--shard", std::to_string(i) + "/3", "-t", "1", "-q"});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        merge.push_back(s.string());
    }
    merge.insert(merge.end(), {"-o", (d / "all.duckdb").string()});
    auto r = pm(merge);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(all_rows(d / "all.duckdb"), all_rows(single));
    r = pm(merge);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("0 runs added, 8 already present"), std::string::npos) << r.err;
    // A DB of another manifest is refused.
    const auto m2 = write(d / "other.toml", manifest(F, "n_predict = 5\n", false));
    ASSERT_EQ(pm({"panel", "run", m2.string(), "--db", (d / "o.duckdb").string(), "-q"}).exit_code, 0);
    r = pm({"merge", (d / "s1.duckdb").string(), (d / "o.duckdb").string(), "-o", (d / "mixed.duckdb").string()});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("different panel manifests"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(d / "mixed.duckdb"));
}

TEST(PanelRun, BadInputIsReportedBeforeAnythingIsWritten) {
    NEED_FILES();
    pmtest::TempDir d;
    const auto db = d / "r.duckdb";
    // Unknown keys, wrong types, missing model files and duplicate labels: all at once.
    const auto bad = write(d / "bad.toml", "name = \"bad\"\nspeed = 1\n[generation]\nseeds = \"one\"\n"
                                           "[[models]]\nlabel = \"m\"\npath = \"missing-1.gguf\"\n"
                                           "[[models]]\nlabel = \"m\"\npath = \"missing-2.gguf\"\n"
                                           "[[prompts]]\nbuiltin = \"stories\"\n");
    auto r = pm({"panel", "run", bad.string(), "--db", db.string()});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("phasemap: error: 5 manifest problems"), std::string::npos) << r.err;
    for (const char* s : {"bad.toml:2:1: unknown key 'speed'", "bad.toml:4:9: 'seeds' must be an integer, not a string",
                          "bad.toml:7:8: model file", "missing-1.gguf' does not exist", "missing-2.gguf' does not exist",
                          "bad.toml:9:9: duplicate model label 'm'"})
        EXPECT_NE(r.err.find(s), std::string::npos) << s << "\n" << r.err;
    EXPECT_FALSE(fs::exists(db));

    // A DB locked by another process (a running panel holds it).
    const auto m = write(d / "panel.toml", manifest(F, "n_predict = 4\n", false));
    ASSERT_EQ(pm({"panel", "run", m.string(), "--db", db.string(), "-q"}).exit_code, 0);
    const auto before = all_rows(db);
    const std::string ready = (d / "ready").string();
    const std::string code = "import fcntl,sys,time\nf=open(sys.argv[1],'r+b')\nfcntl.lockf(f,fcntl.LOCK_EX)\n"
                             "open(sys.argv[2],'w').close()\ntime.sleep(30)\n";
    std::vector<std::string> args{"/usr/bin/python3", "-c", code, db.string(), ready};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t holder = 0;
    ASSERT_EQ(posix_spawn(&holder, argv[0], nullptr, nullptr, argv.data(), environ), 0);
    for (int i = 0; i < 200 && !fs::exists(ready); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    r = pm({"panel", "run", m.string(), "--db", db.string()});
    kill(holder, SIGKILL);
    waitpid(holder, nullptr, 0);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("is locked by another process"), std::string::npos) << r.err;

    // A DB of another schema version.
    store::set_meta_for_test(db, "schema_version", "0");
    const auto size = fs::file_size(db);
    const auto mtime = fs::last_write_time(db);
    r = pm({"panel", "run", m.string(), "--db", db.string()});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("has phasemap schema version 0, this phasemap reads and writes version " +
                         std::to_string(store::kSchemaVersion)),
              std::string::npos)
        << r.err;
    EXPECT_EQ(fs::file_size(db), size);
    EXPECT_EQ(fs::last_write_time(db), mtime);
    r = pm({"export", db.string(), "--parquet", (d / "pq").string()});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_FALSE(fs::exists(d / "pq"));
    store::set_meta_for_test(db, "schema_version", std::to_string(store::kSchemaVersion));
    EXPECT_EQ(all_rows(db), before);

    // Same DB, edited manifest: refused (one DB holds one panel).
    const auto m2 = write(d / "edited.toml", manifest(F, "n_predict = 5\n", false));
    r = pm({"panel", "run", m2.string(), "--db", db.string()});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("another panel manifest"), std::string::npos) << r.err;

    // Options.
    r = pm({"panel", "run", m.string(), "--db", db.string(), "--shard", "3/2"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("need 1 ≤ i ≤ N"), std::string::npos) << r.err;
    // A metric layer that is not captured: refused before generating.
    const auto m3 = write(d / "layer.toml", manifest(F, "layers = \"hf:1-3\"\n[metrics]\nlayer = \"hf:5\"\n", false));
    r = pm({"panel", "run", m3.string(), "--db", (d / "l.duckdb").string()});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("[metrics] layer"), std::string::npos) << r.err;
    EXPECT_EQ(rows(d / "l.duckdb", "SELECT count(*) FROM runs")[0], "0");
}

TEST(PanelAudit, AuditOfARealPanelRunsEverySectionAndStoresItsTables) {
    NEED_FILES();
    pmtest::TempDir d;
    // 2 models × 2 categories × 2 prompts × 2 temperatures × 2 seeds = 32 runs.
    const auto m = write(d / "panel.toml", manifest(F, "", true, R"("animals", "family")", 2));
    const auto db = d / "r.duckdb";
    auto r = pm({"panel", "run", m.string(), "--db", db.string(), "--parallel", "8", "-t", "1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto hyp = write(d / "h.toml", R"(
[subpanel]
models = ["stories", "tiny"]
[[hypothesis]]
id = "R1"
claim = "stories is ADAPTIVE"
type = "regime"
model = "stories"
regime = "ADAPTIVE"
[[hypothesis]]
id = "V1"
claim = "the model explains at least 20 % of the variance"
type = "variance_share"
factor = "model"
min_share = 0.2
)");
    const std::vector<std::string> audit{"audit", db.string(), "--hypotheses", hyp.string(), "--bootstrap", "200",
                                         "--reml-bootstrap", "20", "--permutations", "200", "--json", (d / "a.json").string()};
    r = pm(audit);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("audit: 9 sections stored in"), std::string::npos) << r.out;
    // Every section is stored, whole and as tables, and agrees with the JSON output.
    const auto j = nlohmann::json::parse(std::ifstream(d / "a.json"));
    const auto stored = store::Store::open(db, {.read_only = true})->audits("audit");
    ASSERT_EQ(stored.size(), 9u);
    for (const auto& e : stored) {
        ASSERT_TRUE(j["sections"].contains(e.name)) << e.name;
        EXPECT_EQ(e.data, j["sections"][e.name]) << e.name;
        for (const auto& t : e.tables) EXPECT_GT(std::stoi(rows(db, "SELECT count(*) FROM \"" + t + "\"")[0]), 0) << t;
    }
    // The regime section holds one row per model in some table, with the models' run counts.
    const auto regime = std::find_if(stored.begin(), stored.end(), [](const auto& e) { return e.name == "regime"; });
    ASSERT_NE(regime, stored.end());
    ASSERT_TRUE(regime->ok) << regime->reason;
    bool per_model = false;
    std::string seen;
    for (const auto& t : regime->tables) {
        const auto cols = "," + rows(db, "SELECT string_agg(column_name, ',') FROM information_schema.columns WHERE table_name = '" + t + "'")[0] + ",";
        seen += t + ": " + cols + "\n";
        if (cols.find("model") != std::string::npos && cols.find("category") == std::string::npos && cols.find(",n,") != std::string::npos) {
            per_model = true;
            // 16 runs per model, of which the 2 seeds at temperature 0 repeat one greedy generation
            // (4 prompts): the audit counts each distinct generation once (issue 16) → 12.
            EXPECT_EQ(rows(db, "SELECT model, n FROM \"" + t + "\" ORDER BY model"),
                      (std::vector<std::string>{"stories\t12", "tiny\t12"}));
        }
    }
    EXPECT_TRUE(per_model) << "no per-model regime table among\n" << seen;
    EXPECT_EQ(j["sections"]["regime"]["units"]["merged_identical"], 8) << j["sections"]["regime"]["units"].dump();
    // Cycles get the transition matrix and dwell times from the runs table.
    const auto cyc = std::find_if(stored.begin(), stored.end(), [](const auto& e) { return e.name == "cycles"; });
    ASSERT_NE(cyc, stored.end());
    EXPECT_TRUE(cyc->ok) << cyc->reason;
    EXPECT_FALSE(cyc->data.contains("transitions_reason")) << cyc->data.dump();
    EXPECT_FALSE(cyc->data.contains("dwell_reason")) << cyc->data.dump();
    const auto before = rows(db, "SELECT count(*) FROM audit_values")[0];
    // Running it again replaces the stored audit instead of adding to it; the runs are untouched.
    r = pm(audit);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(rows(db, "SELECT count(*) FROM audits")[0], "9");
    EXPECT_EQ(rows(db, "SELECT count(*) FROM audit_values")[0], before);
    EXPECT_EQ(rows(db, "SELECT count(*) FROM runs")[0], "32");
    // The report uses the stored audit.
    r = pm({"report", db.string(), "-o", (d / "r.html").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::ifstream html(d / "r.html");
    const std::string page((std::istreambuf_iterator<char>(html)), std::istreambuf_iterator<char>());
    EXPECT_NE(page.find("audit stored"), std::string::npos);
    // --no-store leaves the DB as it is; a locked-out write is one clear error.
    const auto mtime = fs::last_write_time(db);
    r = pm({"audit", db.string(), "--section", "regime", "--bootstrap", "50", "--no-store", "-q"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(fs::last_write_time(db), mtime);
}

TEST(PanelRun, SavedStatesAreReferencedFromRuns) {
    NEED_FILES();
    pmtest::TempDir d;
    const auto m = write(d / "panel.toml", manifest(F, "temperatures = 0.0\nseeds = 1\n[output]\nsave_states = true\n", false));
    const auto db = d / "r.duckdb";
    auto r = pm({"panel", "run", m.string(), "--db", db.string(), "-q"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto paths = rows(db, "SELECT states_path FROM runs ORDER BY run_id");
    ASSERT_EQ(paths.size(), 2u);
    for (const auto& p : paths) {
        EXPECT_TRUE(p.starts_with("r.duckdb.states/")) << p;
        EXPECT_TRUE(fs::is_regular_file(d / p)) << p;
    }
    r = pm({"analyze", (d / paths[0]).string(), "-q"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(Quantize, Q8AndQ4KVariantsLoadAndGenerate) {
    NEED_FILES();
    pmtest::TempDir d;
    for (const char* t : {"Q8_0", "q4_k_m"}) {
        const auto out = d / (std::string(t) + ".gguf");
        auto r = pm({"quantize", F.tiny.string(), out.string(), "--type", t, "-t", "1"});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_LT(fs::file_size(out), fs::file_size(F.tiny) / 2);
        r = pm({"generate", "-m", out.string(), "-p", "Hello", "-n", "4", "-q", "-t", "1"});
        EXPECT_EQ(r.exit_code, 0) << t << ": " << r.err;
    }
    auto r = pm({"quantize", F.tiny.string(), (d / "x.gguf").string(), "--type", "Q9_9"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("unknown quantisation type 'Q9_9' (supported: F16, BF16, Q8_0"), std::string::npos) << r.err;
    r = pm({"quantize", (d / "none.gguf").string(), (d / "x.gguf").string(), "--type", "Q8_0"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(d / "x.gguf"));
}

TEST(PanelSlurm, WritesAnArrayScript) {
    NEED_FILES();
    pmtest::TempDir d;
    const auto m = write(d / "panel.toml", manifest(F, ""));
    const auto script = d / "job.sh";
    auto r = pm({"panel", "slurm", m.string(), "--tasks", "4", "--out-dir", (d / "shards").string(), "--cpus-per-task", "2",
                 "-o", script.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::ifstream f(script);
    const std::string s((std::istreambuf_iterator<char>(f)), {});
    for (const char* want : {"#!/bin/bash", "#SBATCH --array=1-4", "#SBATCH --cpus-per-task=2", "--shard $i/4",
                             "/shards'/shard-$i-of-4.duckdb", "panel run"})
        EXPECT_NE(s.find(want), std::string::npos) << want << "\n" << s;
    EXPECT_TRUE((fs::status(script).permissions() & fs::perms::owner_exec) != fs::perms::none);
}
