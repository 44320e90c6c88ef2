// Fixtures shared by the steer suites (tests/steer) and the control-audit / monitor-eval verb
// suites (tests/cli): the shared models, small interventions, the labelled monitor data set.
#pragma once
#include <gtest/gtest.h>

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "phasemap/capture/capture.hpp"
#include "phasemap/steer/monitor.hpp"
#include "support/generation.hpp"
#include "support/paths.hpp"

namespace steertest {

using namespace phasemap;
using namespace phasemap::capture;
using pmtest::req;
using pmtest::run;

inline std::shared_ptr<Model> load_shared(const std::string& file) {
    static std::map<std::string, std::shared_ptr<Model>> cache;
    const auto p = pmtest::shared_model(file);
    if (p.empty()) return nullptr;
    auto& m = cache[file];
    if (!m) m = Model::load(p);
    return m;
}

#define NEED(var, file)                                   \
    auto var = load_shared(file);                         \
    if (!var) GTEST_SKIP() << "../shared/models/" file " is not present"

using pmtest::req;
using pmtest::run;

inline Intervention add_at(int block, std::vector<float> v, double s, int t0, int t1) {
    Intervention iv;
    iv.op = InterventionOp::add;
    iv.block = block;
    iv.vec = std::move(v);
    iv.strength = s;
    iv.t_begin = t0;
    iv.t_end = t1;
    return iv;
}

inline bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

inline const char* kA = "Once upon a time";
inline const char* kB = "Lily and Tom went to the park";

inline steer::Monitor* add_monitor(std::vector<std::unique_ptr<steer::Monitor>>& keep, steer::MonitorOptions mo, const Engine& e, int d) {
    keep.push_back(std::make_unique<steer::Monitor>(mo, e.layers().size(), size_t(d)));
    return keep.back().get();
}

inline void write_text(const std::filesystem::path& p, const std::string& s) {
    std::ofstream f(p, std::ios::binary);
    f << s;
}

inline nlohmann::json read_json_file(const std::filesystem::path& p) {
    std::ifstream f(p);
    return nlohmann::json::parse(f);
}

// One CSV field, quoted (RFC 4180).
inline std::string csv_field(const std::string& s) {
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
}

// The first run of ≥ 3 letters in s ("" when none).
inline std::string first_word(const std::string& s) {
    for (size_t i = 0; i < s.size();) {
        size_t j = i;
        while (j < s.size() && std::isalpha(static_cast<unsigned char>(s[j]))) ++j;
        if (j - i >= 3) return s.substr(i, j - i);
        i = j + 1;
    }
    return "";
}

inline bool in_ci(const nlohmann::json& stat) {
    const double m = stat["mean"].get<double>();
    return stat["ci95"][0].is_number() && stat["ci95"][1].is_number() && stat["ci95"][0].get<double>() <= m + 1e-12 &&
           m <= stat["ci95"][1].get<double>() + 1e-12;
}

inline const std::vector<std::string> kMonitorPrompts = {"Once upon a time, ", "Lily and Tom went to the park", "The little dog was sad"};
inline const char* kGuard = " Lily saw a cat.";

// Labelled prompts for monitor-eval on `model`: the first prompt's answer is a word of its own
// greedy continuation (n tokens), so the baseline arm answers it; the others can never be answered.
// Returns the plain greedy generations.
inline std::vector<RunRecord> write_monitor_data(const std::shared_ptr<Model>& model, int n, const std::filesystem::path& csv) {
    std::vector<RunRecord> plain;
    EngineOptions o;
    o.layers = "hf:last";
    Engine e(model, o);
    for (const auto& p : kMonitorPrompts) plain.push_back(run(e, {req(p, n)})[0]);
    const std::string word = first_word(plain[0].end.text);
    EXPECT_FALSE(word.empty()) << plain[0].end.text;
    std::string text = "prompt,answer\r\n";
    for (size_t i = 0; i < kMonitorPrompts.size(); ++i)
        text += csv_field(kMonitorPrompts[i]) + "," + csv_field(i == 0 ? word : "zqxjv never said") + "\r\n";
    write_text(csv, text);
    return plain;
}

}  // namespace steertest

#include "phasemap/steer/control_vector.hpp"

namespace steertest {

// A control vector for `mi` (direction.N = N·e_0 for blocks 1 … L−1) written to `path`.
inline void write_test_control_vector(const phasemap::capture::ModelInfo& mi, const std::filesystem::path& path) {
    phasemap::steer::ControlVector cv;
    cv.model_hint = mi.architecture;
    cv.n_embd = mi.n_embd;
    cv.model_n_layer = mi.n_layer;
    for (int b = 1; b < mi.n_layer; ++b) {
        std::vector<float> v(size_t(mi.n_embd), 0.0f);
        v[0] = float(b);
        cv.directions[b] = v;
    }
    phasemap::steer::write_control_vector(cv, path);
}

// Malformed FILE[:SCALE] suffixes: each must be one error about the scale (or the empty file part).
inline const std::vector<std::pair<std::string, std::string>> kBadScales = {
    {":1.5x", "the scale '1.5x' is not a number"}, {":", "the scale after ':' is empty"},
    {":abc", "the scale 'abc' is not a number"},   {":1e999", "the scale '1e999' is out of float range"},
    {":nan", "the scale nan is not a finite number"},
};

}  // namespace steertest
