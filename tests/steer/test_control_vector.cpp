// Control vectors (steer/build.cpp, capture/cvec.cpp): built by phasemap, loaded by llama.cpp's own
// loader, applied through its cvec path like the callback; refused for another model.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <sstream>

#include "phasemap/capture/capture.hpp"
#include "phasemap/steer/eval.hpp"
#include "phasemap/steer/monitor.hpp"
#include "phasemap/steer/spec.hpp"
#include "phasemap/steer/vectors.hpp"
#include "common.h"  // llama.cpp's common_control_vector_load (compiled from the pinned source)
#include "phasemap/steer/control_vector.hpp"
#include "support/steer_fixtures.hpp"

using namespace steertest;

TEST(ControlVector, BuiltByPhasemapLoadsInLlamaCppAndMatchesTheCallback) {
    NEED(model, "stories260K.gguf");
    const auto& mi = model->info();
    steer::BuildOptions bo;
    bo.pos = {"Lily was happy and she laughed", "The sun was bright and warm", "Tom smiled at his friend"};
    bo.neg = {"Lily was sad and she cried", "The night was dark and cold", "Tom was angry at his friend"};
    for (auto method : {steer::VectorMethod::mean_diff, steer::VectorMethod::pca}) {
        bo.method = method;
        const steer::ControlVector cv = steer::build_control_vector(model, bo);
        ASSERT_EQ(int(cv.directions.size()), mi.n_layer - 1);
        pmtest::TempDir dir;
        const auto path = dir / "cv.gguf";
        steer::write_control_vector(cv, path);
        const float scale = 2.0f;
        // llama.cpp's own loader (common/common.cpp, pinned source) and cvec path
        const common_control_vector_data loaded = common_control_vector_load({{scale, path.string()}});
        ASSERT_EQ(loaded.n_embd, mi.n_embd);
        EngineOptions o;
        o.layers = "hf:all";
        o.save_logits = true;
        Engine e1(model, o);
        e1.set_control_vector(loaded.data, 1, mi.n_layer - 1);
        const auto a = run(e1, {req(kA, 12)});
        Engine e2(model, o);
        auto r = req(kA, 12);
        r.interventions = steer::control_vector_interventions(steer::read_control_vector(path), scale);
        const auto b = run(e2, {r});
        Engine e3(model, o);
        const auto base = run(e3, {req(kA, 12)});
        ASSERT_EQ(a[0].logits.size(), b[0].logits.size());
        double maxd = 0, moved = 0;
        for (size_t i = 0; i < a[0].logits.size(); ++i) {
            maxd = std::max(maxd, double(std::abs(a[0].logits[i] - b[0].logits[i])));
            moved = std::max(moved, double(std::abs(a[0].logits[i] - base[0].logits[i])));
        }
        EXPECT_LE(maxd, 1e-4) << steer::method_name(method);
        EXPECT_GT(moved, 1e-3) << "the control vector changes nothing";
        EXPECT_EQ(a[0].end.text, b[0].end.text);
    }
}

TEST(ControlVector, ForAnotherModelIsRejected) {
    NEED(model, "stories260K.gguf");
    const auto& mi = model->info();
    steer::ControlVector cv;
    cv.n_embd = mi.n_embd;
    cv.model_hint = mi.architecture;
    cv.directions[1] = std::vector<float>(size_t(mi.n_embd), 0.1f);
    EXPECT_NO_THROW(steer::check_control_vector(cv, mi.architecture, mi.n_layer, mi.n_embd));
    auto other = cv;
    other.model_hint = "rwkv7";
    EXPECT_THROW(steer::check_control_vector(other, mi.architecture, mi.n_layer, mi.n_embd), std::invalid_argument);
    other = cv;
    other.n_embd = 128;
    other.directions[1].resize(128);
    EXPECT_THROW(steer::check_control_vector(other, mi.architecture, mi.n_layer, mi.n_embd), std::invalid_argument);
    other = cv;
    other.directions[mi.n_layer] = std::vector<float>(size_t(mi.n_embd), 0.1f);
    EXPECT_THROW(steer::check_control_vector(other, mi.architecture, mi.n_layer, mi.n_embd), std::invalid_argument);
    // through the CLI: a vector for another model fails before generation
    pmtest::TempDir dir;
    other = cv;
    other.model_hint = "rwkv7";
    steer::write_control_vector(other, dir / "rw.gguf");
    const auto res = pmtest::run_phasemap({"generate", "-m", pmtest::shared_model("stories260K.gguf").string(), "-p", kA, "-n", "4",
                                           "--control-vector", (dir / "rw.gguf").string() + ":1.5"});
    EXPECT_EQ(res.exit_code, 1);
    EXPECT_NE(res.err.find("built for a 'rwkv7' model"), std::string::npos) << res.err;
    EXPECT_EQ(res.out, "");
}
