// The run plan (src/plan): the same settings give the same engine requests whichever verb builds
// them; FILE[:SCALE], interventions and the monitor are parsed once, strictly, with one message.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "phasemap/plan/run_plan.hpp"
#include "phasemap/plan/steer_plan.hpp"
#include "phasemap/steer/control_vector.hpp"
#include "support/generation.hpp"
#include "support/paths.hpp"
#include "support/steer_fixtures.hpp"

using namespace phasemap;
namespace fs = std::filesystem;

namespace {

plan::RunSettings settings(const std::string& model) {
    plan::RunSettings s;
    s.model = model;
    s.prompts = {"Once upon a time", "Lily went", "The dog"};
    s.chat = false;
    s.n_predict = 7;
    s.sampling = {0.7f, 20, 0.9f, 42};
    s.engine.layers = "hf:last";
    s.engine.n_parallel = 8;
    s.engine.n_threads = 1;
    return s;
}

}  // namespace

TEST(RunPlan, RequestsCarryTheSettingsAndTheirInterventions) {
    NEED_STORIES_PATH();
    plan::RunSettings s = settings(model_path);
    s.intervene = {"scale:block:1:0.5@prompts=1", "clamp:block:-1:3.0"};
    const plan::RunPlan p = plan::build_run(s);
    ASSERT_EQ(p.requests.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
        SCOPED_TRACE(i);
        const capture::Request& r = p.requests[i];
        EXPECT_EQ(r.prompt, s.prompts[i]);
        EXPECT_EQ(r.n_predict, 7);
        EXPECT_EQ(r.sampling.temperature, 0.7f);
        EXPECT_EQ(r.sampling.top_k, 20);
        EXPECT_EQ(r.sampling.top_p, 0.9f);
        EXPECT_EQ(r.sampling.seed, 42u);
        EXPECT_EQ(r.controller, nullptr);
        // prompts=1 only on request 1; the other on every request (block -1 resolved to the last).
        ASSERT_EQ(r.interventions.size(), i == 1 ? 2u : 1u);
        EXPECT_EQ(r.interventions.back().block, p.model->info().n_layer - 1);
    }
    EXPECT_EQ(p.requests[1].interventions[0].block, 1);
    EXPECT_EQ(p.requests[1].interventions[0].op, capture::InterventionOp::scale);
    // n_parallel is capped at the prompts; the metadata records what was run.
    EXPECT_EQ(p.metadata["n_parallel"], 3);
    EXPECT_EQ(p.metadata["n_predict"], 7);
    EXPECT_EQ(p.metadata["sampling"]["seed"], 42);
    EXPECT_EQ(p.metadata["sampling"]["greedy"], false);
    EXPECT_EQ(p.metadata["interventions"].size(), 2u);
    EXPECT_EQ(p.metadata["interventions"][0]["prompts"], nlohmann::json::array({1}));
    EXPECT_FALSE(p.metadata.contains("control_vectors"));
    EXPECT_FALSE(p.metadata.contains("monitor"));
    // The provenance is the metadata without the generate keys.
    for (const auto& [k, v] : p.provenance.items()) EXPECT_EQ(p.metadata[k], v) << k;
    EXPECT_FALSE(p.provenance.contains("sampling"));
}

TEST(RunPlan, SameSettingsSameRequestsAsMakeRequest) {
    NEED_STORIES_PATH();
    const plan::RunSettings s = settings(model_path);
    const plan::RunPlan a = plan::build_run(s), b = plan::build_run(s);
    ASSERT_EQ(a.requests.size(), b.requests.size());
    for (size_t i = 0; i < a.requests.size(); ++i) {
        const capture::Request m = plan::make_request(s, i);
        for (const capture::Request* r : {&a.requests[i], &b.requests[i]}) {
            EXPECT_EQ(r->prompt, m.prompt);
            EXPECT_EQ(r->chat, m.chat);
            EXPECT_EQ(r->n_predict, m.n_predict);
            EXPECT_EQ(r->sampling.temperature, m.sampling.temperature);
            EXPECT_EQ(r->sampling.seed, m.sampling.seed);
            EXPECT_TRUE(r->interventions.empty());
        }
    }
    EXPECT_EQ(a.metadata, b.metadata);
}

TEST(RunPlan, MonitorGivesEachRequestItsOwnController) {
    NEED_STORIES_PATH();
    plan::RunSettings s = settings(model_path);
    s.monitor.enabled = true;
    s.monitor.triggers = {"streak:n=4"};
    s.monitor.on = "stop";
    const plan::RunPlan p = plan::build_run(s);
    ASSERT_TRUE(p.monitor);
    EXPECT_EQ(p.monitor->action, steer::ActionKind::stop);
    ASSERT_EQ(p.monitors.size(), 3u);
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(p.requests[i].controller, p.monitors[i].get());
    EXPECT_EQ(p.metadata["monitor"]["action"], "stop");
    EXPECT_EQ(p.metadata["monitor"]["triggers"], nlohmann::json::array({"streak:n=4"}));
}

TEST(RunPlan, BadSettingsAreOneErrorBeforeAnythingRuns) {
    NEED_STORIES_PATH();
    const struct {
        void (*edit)(plan::RunSettings&);
        const char* msg;
    } cases[] = {
        {[](plan::RunSettings& s) { s.control_vectors = {"cv.gguf:1.5x"}; }, "--control-vector 'cv.gguf:1.5x': the scale '1.5x' is not a number"},
        {[](plan::RunSettings& s) { s.loras = {"a.gguf:nan"}; }, "--lora 'a.gguf:nan': the scale nan is not a finite number"},
        {[](plan::RunSettings& s) { s.intervene = {"scale:block:1:0.5@prompts=3"}; }, "prompt index 3 out of range (3 prompts)"},
        {[](plan::RunSettings& s) { s.intervene = {"scale:block:99:0.5"}; }, "layer block:99 is out of range"},
        {[](plan::RunSettings& s) { s.monitor.on = "stop"; }, "need --monitor"},
        {[](plan::RunSettings& s) { s.monitor = {.enabled = true, .on = "intervene"}; }, "--on intervene needs --on-intervene SPEC"},
        {[](plan::RunSettings& s) { s.monitor.enabled = true; s.engine.layers = "none"; }, "--monitor needs captured layers"},
        {[](plan::RunSettings& s) { s.prompts.clear(); }, "no prompt given"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.msg);
        plan::RunSettings s = settings(model_path);
        c.edit(s);
        try {
            plan::build_run(s);
            ADD_FAILURE() << "accepted";
        } catch (const std::exception& e) {
            EXPECT_NE(std::string(e.what()).find(c.msg), std::string::npos) << e.what();
            EXPECT_EQ(std::string(e.what()).find(": error:"), std::string::npos) << e.what();
        }
    }
}

// What the panel runner asks of the run plan: per-prompt sampling and budget (its grid points),
// and the context the requests need instead of the default.
TEST(RunPlan, PerPromptSettingsAndAFittedContext) {
    NEED_STORIES_PATH();
    plan::RunSettings s = settings(model_path);
    s.per_prompt = {{3, {0.0f, 0, 1.0f, 1}}, {5, {0.5f, 10, 0.8f, 2}}, {9, {1.0f, 0, 0.9f, 3}}};
    s.fit_context = true;
    const plan::RunPlan p = plan::build_run(s);
    ASSERT_EQ(p.requests.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
        SCOPED_TRACE(i);
        EXPECT_EQ(p.requests[i].prompt, s.prompts[i]);
        EXPECT_EQ(p.requests[i].n_predict, s.per_prompt[i].n_predict);
        EXPECT_EQ(p.requests[i].sampling.temperature, s.per_prompt[i].sampling.temperature);
        EXPECT_EQ(p.requests[i].sampling.top_k, s.per_prompt[i].sampling.top_k);
        EXPECT_EQ(p.requests[i].sampling.top_p, s.per_prompt[i].sampling.top_p);
        EXPECT_EQ(p.requests[i].sampling.seed, s.per_prompt[i].sampling.seed);
    }
    // (On stories260K the fitted context is its whole 128-cell training context, the cap.)
    EXPECT_EQ(p.engine->facts().n_ctx, capture::context_for(*p.model, p.requests));
    s.engine.n_ctx = 64;   // a context given is kept
    EXPECT_EQ(plan::build_run(s).engine->facts().n_ctx, 64);
    s.per_prompt.pop_back();
    EXPECT_THROW(plan::build_run(s), std::invalid_argument);
}

TEST(RunPlan, ControlVectorsAreSummedIntoTheMetadata) {
    NEED_STORIES_PATH();
    pmtest::TempDir t;
    const auto mi = capture::Model::load(model_path)->info();
    const fs::path cv = t / "cv.gguf";
    steertest::write_test_control_vector(mi, cv);
    plan::RunSettings s = settings(model_path);
    s.control_vectors = {cv.string() + ":0.5", cv.string()};
    const plan::RunPlan p = plan::build_run(s);
    ASSERT_EQ(p.metadata["control_vectors"].size(), 2u);
    EXPECT_EQ(p.metadata["control_vectors"][0]["path"], cv.string());
    EXPECT_EQ(p.metadata["control_vectors"][0]["scale"], 0.5);
    EXPECT_EQ(p.metadata["control_vectors"][1]["scale"], 1.0);
    const std::vector<std::string> in = plan::input_files(s);
    EXPECT_EQ(std::count(in.begin(), in.end(), cv.string()), 2);
}

TEST(SteerPlan, ControlAuditTakesTheControlVectorAtItsScale) {
    NEED_STORIES_PATH();
    pmtest::TempDir t;
    const auto mi = capture::Model::load(model_path)->info();
    const fs::path cv = t / "cv.gguf";
    steertest::write_test_control_vector(mi, cv);
    plan::ControlAuditSettings s;
    s.model = model_path;
    s.control_vector = cv.string() + ":1.5";
    s.intervene = {"scale:block:1:0.5"};
    s.audit.prompts = {"Once upon a time"};
    const plan::ControlAuditPlan p = plan::plan_control_audit(s);
    const auto want = steer::control_vector_interventions(steer::read_control_vector(cv), 1.5f);
    ASSERT_EQ(p.options.interventions.size(), 1 + want.size());
    EXPECT_EQ(p.options.interventions[0].op, capture::InterventionOp::scale);
    for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(p.options.interventions[1 + i].block, want[i].block);
        EXPECT_EQ(p.options.interventions[1 + i].strength, want[i].strength);
        EXPECT_EQ(p.options.interventions[1 + i].vec, want[i].vec);
    }
    EXPECT_EQ(p.options.prompts, s.audit.prompts);
    // The bug of issue 12: "1.5x" was read as 1.5 here.
    for (const char* bad : {":1.5x", ":", ":abc", ":1e999", ":nan"}) {
        SCOPED_TRACE(bad);
        s.control_vector = cv.string() + bad;
        EXPECT_THROW(plan::plan_control_audit(s), std::invalid_argument);
    }
    s.control_vector.clear();
    s.intervene = {"scale:block:1:0.5@prompts=0"};
    EXPECT_THROW(plan::plan_control_audit(s), std::invalid_argument);
    s.intervene.clear();
    EXPECT_THROW(plan::plan_control_audit(s), std::invalid_argument);
}

TEST(SteerPlan, MonitorEvalParsesTheTriggers) {
    NEED_STORIES_PATH();
    plan::MonitorEvalSettings s;
    s.model = model_path;
    s.triggers = {"collapse:window=4", "streak:n=3"};
    const plan::MonitorEvalPlan p = plan::plan_monitor_eval(s);
    ASSERT_EQ(p.options.monitor.triggers.size(), 2u);
    EXPECT_EQ(p.options.monitor.triggers[0].kind, steer::TriggerKind::collapse);
    EXPECT_EQ(p.options.monitor.triggers[1].kind, steer::TriggerKind::streak);
    s.triggers = {"nope"};
    EXPECT_THROW(plan::plan_monitor_eval(s), std::invalid_argument);
}
