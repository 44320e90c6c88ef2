// `phasemap analyze` and `generate --analyze`: same numbers from the file and from memory,
// printed summary, bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "phasemap/capture/capture.hpp"
#include "phasemap/metrics/analyze.hpp"
#include "phasemap/io/npz.hpp"
#include "phasemap/io/run_file.hpp"
#include "phasemap/capture/run_sinks.hpp"
#include "phasemap/io/summary_json.hpp"
#include "support/paths.hpp"

namespace fs = std::filesystem;
using pmtest::run_phasemap;
using namespace phasemap;

namespace {

nlohmann::json read_json(const fs::path& p) {
    std::ifstream f(p);
    return nlohmann::json::parse(f);
}

std::string dump(const metrics::RunSummary& s) {
    return io::summary_json(s, {}).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// In one process: the run as generated (in memory) and as read back from its NPZ give
// bit-identical summaries (the JSON prints doubles in shortest round-trip form).
TEST(Analyze, FileAndMemoryGiveBitIdenticalSummaries) {
    const auto m = pmtest::shared_model("stories260K.gguf");
    if (m.empty()) GTEST_SKIP() << "stories260K.gguf not present";
    pmtest::TempDir d;
    auto model = capture::Model::load(m);
    capture::EngineOptions o;
    o.layers = "hf:1-5";
    capture::Engine e(model, o);
    capture::Request r;
    r.prompt = "Once upon a time";
    r.n_predict = 40;
    capture::RecordingSink rec;
    capture::NpzRunWriter npz(d / "run.npz", nlohmann::json::object());
    capture::TeeSink tee({&npz, &rec});
    e.generate(std::vector<capture::Request>{r}, [&](size_t) -> capture::RunSink& { return tee; });
    std::vector<std::string> names;
    for (const auto& l : rec.record.start.layers) names.push_back(l.label);
    std::vector<metrics::TokenProbStats> stats;
    for (const auto& t : rec.record.tokens) stats.push_back(t.stats);
    metrics::AnalysisOptions opt;
    opt.controls.shuffles = 50;
    const auto mem = metrics::analyze_run({rec.record.states.data(), 40, 5, 64, names}, stats, opt);
    const auto run = io::load_run_npz(d / "run.npz");
    ASSERT_EQ(run.layer_names, names);
    ASSERT_EQ(run.stats_source, "stored");
    const auto file = metrics::analyze_run({run.states.data(), run.tokens, run.layers, run.dim, run.layer_names}, run.stats, opt);
    EXPECT_EQ(dump(mem), dump(file));
    ASSERT_TRUE(mem.token.ratio_norm.ok());
    EXPECT_GE(mem.token.ratio_norm.v, 1.0);
}

TEST(Analyze, CliFromFileEqualsGenerateAnalyze) {
    const auto m = pmtest::shared_model("stories260K.gguf");
    if (m.empty()) GTEST_SKIP() << "stories260K.gguf not present";
    pmtest::TempDir d;
    auto g = run_phasemap({"generate", "-m", m.string(), "-p", "Once upon a time", "-n", "32", "--save-logits", "--analyze",
                           "--shuffles", "20", "--json", (d / "g.json").string(), "-o", (d / "run.npz").string()});
    ASSERT_EQ(g.exit_code, 0) << g.err;
    EXPECT_NE(g.out.find("ratio_norm"), std::string::npos);
    EXPECT_NE(g.out.find("regime"), std::string::npos);
    auto a = run_phasemap({"analyze", (d / "run.npz").string(), "--shuffles", "20", "--json", (d / "a.json").string(), "--tokens"});
    ASSERT_EQ(a.exit_code, 0) << a.err;
    EXPECT_NE(a.out.find("ct_t"), std::string::npos);
    const auto jg = read_json(d / "g.json"), ja = read_json(d / "a.json");
    EXPECT_EQ(jg, ja);
    // Schema: LIMEN's summary keys plus phasemap's sections, spec names.
    for (const char* k : {"status", "prompt", "generated_text", "input", "summary", "token_axis", "output_states", "per_token",
                          "options", "provenance", "embedding_output_included"})
        EXPECT_TRUE(ja.contains(k)) << k;
    EXPECT_TRUE(ja["summary"].contains("trajectory.tortuosity"));
    EXPECT_TRUE(ja["summary"].contains("baseline.entropy_nats"));
    EXPECT_TRUE(ja["token_axis"]["ratio_norm"].is_number());
    EXPECT_TRUE(ja["token_axis"]["collapse"].is_boolean());
    EXPECT_EQ(ja["token_axis"]["layer"], "hf:5");
    EXPECT_EQ(ja["embedding_output_included"], false);  // hf:0 captured but left out by default
    EXPECT_EQ(ja["input"]["hidden_states_shape"], nlohmann::json({32, 6, 64}));
    EXPECT_EQ(ja["per_token"]["ct_t"].size(), 32u);
    EXPECT_EQ(ja["controls"]["token_order"]["shuffles"], 20);
    // Options change the numbers and are recorded.
    auto b = run_phasemap({"analyze", (d / "run.npz").string(), "--curvature", "angle", "--include-embedding", "--json",
                           (d / "b.json").string(), "-q"});
    ASSERT_EQ(b.exit_code, 0) << b.err;
    const auto jb = read_json(d / "b.json");
    EXPECT_EQ(jb["options"]["curvature"], "angle");
    EXPECT_EQ(jb["embedding_output_included"], true);
    EXPECT_NE(jb["token_axis"]["ratio_norm"], ja["token_axis"]["ratio_norm"]);
}

void write_npz(const fs::path& p, const std::string& member, const std::string& dtype, const std::vector<size_t>& shape,
               const void* data) {
    io::NpzBuilder b;
    b.add_bytes(member, io::npy_bytes(dtype, shape, data));
    b.commit(p, false);
}

TEST(Analyze, BadInputsGiveClearErrors) {
    pmtest::TempDir d;
    std::vector<float> ok(4 * 3 * 8, 0.5f);
    for (size_t i = 0; i < ok.size(); ++i) ok[i] = float(std::sin(double(i) * 0.37));
    write_npz(d / "nohs.npz", "logits.npy", "<f4", {4, 24}, ok.data());
    write_npz(d / "rank2.npz", "hidden_states.npy", "<f4", {12, 8}, ok.data());
    write_npz(d / "ints.npz", "hidden_states.npy", "<i4", {4, 3, 8}, ok.data());
    {
        std::ofstream(d / "text.npz") << "not a zip";
        write_npz(d / "full.npz", "hidden_states.npy", "<f4", {4, 3, 8}, ok.data());
        std::ifstream in(d / "full.npz", std::ios::binary);
        std::string all((std::istreambuf_iterator<char>(in)), {});
        std::ofstream(d / "trunc.npz", std::ios::binary).write(all.data(), std::streamsize(all.size() / 2));
    }
    const std::vector<std::pair<std::string, std::string>> cases{
        {"nohs.npz", "no 'hidden_states'"}, {"rank2.npz", "rank 2"},       {"ints.npz", "expected a float"},
        {"text.npz", "not a zip"},          {"trunc.npz", "trunc.npz"},    {"missing.npz", "no such file"},
    };
    for (const auto& [f, expect] : cases) {
        const auto r = run_phasemap({"analyze", (d / f).string()});
        EXPECT_EQ(r.exit_code, 1) << f << ": " << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << f << ": " << r.err;
        EXPECT_NE(r.err.find(expect), std::string::npos) << f << ": " << r.err;
    }
    const auto bad_opt = run_phasemap({"analyze", (d / "full.npz").string(), "--regime-cuts", "3,2,1"});
    EXPECT_EQ(bad_opt.exit_code, 1);
    EXPECT_NE(bad_opt.err.find("ascending"), std::string::npos) << bad_opt.err;
    const auto bad_layer = run_phasemap({"analyze", (d / "full.npz").string(), "--metric-layer", "hf:9"});
    EXPECT_EQ(bad_layer.exit_code, 1) << bad_layer.err;
}

TEST(Analyze, TooFewTokensOrNonFiniteStatesAreMissingWithReason) {
    pmtest::TempDir d;
    // 2 tokens: ct needs 3 tokens at least → ratio_norm missing with reason, exit 0.
    std::vector<float> two(2 * 3 * 4, 1.0f);
    two[5] = 2.0f;
    write_npz(d / "two.npz", "hidden_states.npy", "<f4", {2, 3, 4}, two.data());
    auto r = run_phasemap({"analyze", (d / "two.npz").string(), "--json", (d / "two.json").string(), "-q"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = read_json(d / "two.json");
    EXPECT_TRUE(j["token_axis"]["ratio_norm"].is_null());
    EXPECT_FALSE(j["token_axis"]["ratio_norm_missing_reason"].get<std::string>().empty());
    // Two layers: the layer axis needs three.
    std::vector<float> s(6 * 2 * 4);
    for (size_t i = 0; i < s.size(); ++i) s[i] = float(std::cos(double(i)));
    write_npz(d / "l2.npz", "hidden_states.npy", "<f4", {6, 2, 4}, s.data());
    r = run_phasemap({"analyze", (d / "l2.npz").string(), "--json", (d / "l2.json").string(), "-q"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    j = read_json(d / "l2.json");
    EXPECT_TRUE(j.contains("layer_axis_missing_reason"));
    EXPECT_EQ(j["summary"]["trajectory.tortuosity"]["n"], 0);
    // NaN in the states.
    std::vector<float> nan(6 * 3 * 4, 0.25f);
    for (size_t i = 0; i < nan.size(); ++i) nan[i] = float(std::sin(double(i)));
    nan[3 * 12 + 2 * 4 + 1] = std::nanf("");  // token 3, last layer (the token axis)
    write_npz(d / "nan.npz", "hidden_states.npy", "<f4", {6, 3, 4}, nan.data());
    r = run_phasemap({"analyze", (d / "nan.npz").string(), "--json", (d / "nan.json").string(), "-q"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    j = read_json(d / "nan.json");
    EXPECT_TRUE(j["token_axis"]["ratio_norm"].is_null());
    EXPECT_TRUE(j["token_axis"].contains("missing_reason") || j["token_axis"].contains("ratio_norm_missing_reason"));
}

}  // namespace
