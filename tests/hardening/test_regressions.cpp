// Regression tests for parser bugs found by fuzzing (fuzz/, `make fuzz`). Each test names the
// input shape that used to crash or misbehave; the fixed behaviour is a clear runtime_error.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "phasemap/capture/layers.hpp"
#include "phasemap/io/npz.hpp"
#include "phasemap/io/run_file.hpp"
#include "phasemap/steer/control_vector.hpp"
#include "support/paths.hpp"

namespace io = phasemap::io;

namespace {

// A version-1 .npy with a hand-written header dict.
std::string npy_with_header(const std::string& dict, const std::string& payload) {
    std::string h = dict;
    while ((10 + h.size() + 1) % 64) h.push_back(' ');
    h.push_back('\n');
    std::string b = "\x93NUMPY\x01";
    b.push_back('\0');
    b.push_back(char(h.size() & 0xff));
    b.push_back(char(h.size() >> 8));
    return b + h + payload;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}

// fuzz_npy: dtype '<f0' has item size 0 and made the overflow check divide by zero (SIGFPE).
TEST(FuzzRegression, ZeroItemSizeDtypeIsRejected) {
    const std::string b = npy_with_header("{'descr': '<f0', 'fortran_order': False, 'shape': (3,), }", "");
    EXPECT_NE(error_of([&] { io::parse_npy(b, "x"); }).find("unsupported dtype '<f0'"), std::string::npos);
    for (const char* dt : {"<f3", "<i16", "<u0", "<f4x", "<f 4", "<b1"}) {
        const std::string s = npy_with_header(std::string("{'descr': '") + dt + "', 'fortran_order': False, 'shape': (1,), }",
                                              std::string(16, '\0'));
        EXPECT_NE(error_of([&] { io::parse_npy(s, "x"); }).find("unsupported dtype"), std::string::npos) << dt;
    }
}

// fuzz_npy: a 23-digit dimension threw std::out_of_range ("stoull") instead of a clear error.
TEST(FuzzRegression, HugeShapeDimensionIsAClearError) {
    const std::string b = npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }", "");
    EXPECT_NE(error_of([&] { io::parse_npy(b, "x"); }).find("shape dimension out of range"), std::string::npos);
    const std::string c = npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296,), }", "");
    EXPECT_NE(error_of([&] { io::parse_npy(c, "x"); }).find("shape too large"), std::string::npos);
}

// fuzz_npy (UBSan): as_float on an empty <f4 array passed a null pointer to memcpy.
TEST(FuzzRegression, EmptyArrayConvertsToEmptyVector) {
    const std::string b = npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }", "");
    const io::NpyArray a = io::parse_npy(b, "x");
    EXPECT_EQ(a.size(), 0u);
    EXPECT_TRUE(a.as_float().empty());
}

void write_run(const std::filesystem::path& p, const std::vector<size_t>& hs_shape, const std::string& meta) {
    io::NpzBuilder b;
    const size_t n = hs_shape[0] * hs_shape[1] * hs_shape[2];
    std::vector<float> v(n, 0.25f);
    b.add_bytes("hidden_states.npy", io::npy_bytes("<f4", hs_shape, v.data()));
    if (!meta.empty()) b.add_bytes("metadata.json", meta);
    b.commit(p, false);
}

// fuzz_run_file: metadata "layers" entries that are not objects (or labels that are not strings)
// threw nlohmann's type_error out of load_run_npz.
TEST(FuzzRegression, OddLayerMetadataFallsBackToEmptyLabels) {
    pmtest::TempDir d;
    write_run(d / "r.npz", {2, 3, 4}, R"({"layers": [1, {"label": 2}, {"label": "hf:3"}], "tokens": [1, "x"]})");
    const io::RunData r = io::load_run_npz(d / "r.npz");
    EXPECT_EQ(r.layer_names, (std::vector<std::string>{"", "", "hf:3"}));
    EXPECT_EQ(r.token_texts, (std::vector<std::string>{"", "x"}));
}

// fuzz_run_file: hidden_states of shape [0, 10^9, 0] (a few bytes) made the loader build a
// billion layer names; an empty array is now rejected.
TEST(FuzzRegression, EmptyHiddenStatesAreRejected) {
    pmtest::TempDir d;
    io::NpzBuilder b;
    b.add_bytes("hidden_states.npy", io::npy_bytes("<f4", {0, 1000000000, 0}, nullptr));
    b.commit(d / "e.npz", false);
    EXPECT_NE(error_of([&] { io::load_run_npz(d / "e.npz"); }).find("hidden_states is empty"), std::string::npos);
}

std::filesystem::path cvec_regression(const char* name) {
    return std::filesystem::path(PHASEMAP_SOURCE_DIR) / "tests" / "hardening" / "regressions" / "control_vector" / name;
}

// fuzz_control_vector: a few hundred bytes declaring a tensor of 2^40 (or, in the fuzzer's input,
// ~10^13) floats made ggml allocate the whole data section before reading it: ggml_init aborted
// (GGML_ASSERT on a failed allocation). The reader now loads metadata only and checks each
// direction against the file size before reading its values.
TEST(FuzzRegression, HugeTensorClaimInATinyFileIsAClearError) {
    EXPECT_NE(error_of([] { phasemap::steer::read_control_vector(cvec_regression("huge-1d-claim.gguf")); })
                  .find("'direction.1' (1099511627776 values) extends past the end of the file"),
              std::string::npos);
    EXPECT_NE(error_of([] { phasemap::steer::read_control_vector(cvec_regression("huge-tensor-claim.gguf")); }), "");
}

// The reader now reads the values itself (data offset + tensor offset): it must still read what
// ggml's writer wrote (padding, alignment, several tensors) and the hand-written seed exactly.
TEST(FuzzRegression, ControlVectorValuesAreReadFromTheirOffsets) {
    pmtest::TempDir d;
    phasemap::steer::ControlVector cv;
    cv.n_embd = 5;
    cv.model_hint = "llama";
    for (int n : {1, 3, 6}) cv.directions[n] = {0.5f * float(n), -1.0f, 2.0f, float(n), -0.25f};
    phasemap::steer::write_control_vector(cv, d / "w.gguf");
    const auto back = phasemap::steer::read_control_vector(d / "w.gguf");
    EXPECT_EQ(back.n_embd, 5);
    EXPECT_EQ(back.directions, cv.directions);
    const auto seed = phasemap::steer::read_control_vector(std::filesystem::path(PHASEMAP_SOURCE_DIR) / "fuzz" / "corpus" /
                                                           "control_vector" / "phasemap.gguf");
    ASSERT_EQ(seed.directions.size(), 3u);  // fuzz/make_seeds.py: direction.k = [k/4, -0.5, 1, k]
    EXPECT_EQ(seed.directions.at(2), (std::vector<float>{0.5f, -0.5f, 1.0f, 2.0f}));
    EXPECT_EQ(seed.directions.at(3), (std::vector<float>{0.75f, -0.5f, 1.0f, 3.0f}));
    EXPECT_EQ(seed.model_n_layer, 8);
    EXPECT_EQ(seed.method, "mean_diff");
}

// A 0-element direction.1 followed by a 4-value direction.2 was accepted with n_embd 4 and an
// empty direction.1, which check_control_vector passed and ControlVector::flat() read past
// (found reading the reader while writing the harness; the corpus input replays it).
TEST(FuzzRegression, EmptyDirectionIsRejected) {
    EXPECT_NE(error_of([] { phasemap::steer::read_control_vector(cvec_regression("empty-first-direction.gguf")); })
                  .find("tensor 'direction.1' holds no values"),
              std::string::npos);
    phasemap::steer::ControlVector cv;
    cv.n_embd = 4;
    cv.directions[1] = {};
    cv.directions[2] = {1, 2, 3, 4};
    try {
        phasemap::steer::check_control_vector(cv, "llama", 8, 4);
        ADD_FAILURE() << "a direction with 0 of 4 values passed the check";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("direction.1 has 0 values, expected 4"), std::string::npos) << e.what();
    }
}

}  // namespace
