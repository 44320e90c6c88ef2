// NPY/NPZ writer and reader: round trips, numpy header layout, errors on damaged files.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "phasemap/io/npz.hpp"
#include "support/paths.hpp"

using namespace phasemap::io;

namespace {

std::string slurp(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

TEST(Npy, HeaderIsNumpyV1AndPaddedTo64) {
    const float v[6] = {1, 2, 3, 4, 5, 6};
    const std::string b = npy_bytes("<f4", {2, 3}, v);
    ASSERT_EQ(b.substr(0, 6), "\x93NUMPY");
    EXPECT_EQ(b[6], 1);
    const size_t hl = uint8_t(b[8]) | (size_t(uint8_t(b[9])) << 8);
    EXPECT_EQ((10 + hl) % 64, 0u);
    EXPECT_NE(b.find("'shape': (2, 3)"), std::string::npos);
    EXPECT_EQ(b[10 + hl - 1], '\n');
    EXPECT_EQ(b.size(), 10 + hl + 24);
    const NpyArray a = parse_npy(b, "x");
    EXPECT_EQ(a.shape, (std::vector<size_t>{2, 3}));
    EXPECT_EQ(a.as_float(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
}

TEST(Npy, OneDimensionalShapeHasTrailingComma) {
    const int64_t v[3] = {7, -8, 9};
    const std::string b = npy_bytes("<i8", {3}, v);
    EXPECT_NE(b.find("'shape': (3,)"), std::string::npos);
    EXPECT_EQ(parse_npy(b, "x").as_int64(), (std::vector<int64_t>{7, -8, 9}));
}

TEST(Npy, Float16Conversion) {
    // 1.0, -2.0, 0.5, 65504 (max), smallest subnormal 2^-24, +inf
    const uint16_t h[6] = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x7c00};
    const auto f = parse_npy(npy_bytes("<f2", {6}, h), "x").as_float();
    EXPECT_EQ(f[0], 1.0f);
    EXPECT_EQ(f[1], -2.0f);
    EXPECT_EQ(f[2], 0.5f);
    EXPECT_EQ(f[3], 65504.0f);
    EXPECT_EQ(f[4], std::ldexp(1.0f, -24));
    EXPECT_TRUE(std::isinf(f[5]));
}

TEST(Npy, TruncatedDataIsRejected) {
    const float v[4] = {1, 2, 3, 4};
    std::string b = npy_bytes("<f4", {4}, v);
    b.resize(b.size() - 3);
    EXPECT_THROW(parse_npy(b, "x"), std::runtime_error);
    EXPECT_THROW(parse_npy("garbage", "x"), std::runtime_error);
}

TEST(Npz, StreamWriterAndBuilderRoundTrip) {
    pmtest::TempDir d;
    for (bool compress : {false, true}) {
        NpyStreamWriter w(d / "hs.npy", "<f4", {2, 3});
        std::vector<float> all;
        for (int t = 0; t < 5; ++t) {
            std::vector<float> row(6);
            for (int j = 0; j < 6; ++j) row[size_t(j)] = float(t * 10 + j);
            w.append(row.data(), 1);
            all.insert(all.end(), row.begin(), row.end());
        }
        w.finish();
        NpzBuilder b;
        b.add_file("hidden_states.npy", d / "hs.npy");
        b.add_bytes("metadata.json", "{\"a\": 1}");
        const auto out = d / (compress ? "c.npz" : "s.npz");
        b.commit(out, compress);
        NpzReader r(out);
        EXPECT_TRUE(r.has("hidden_states"));
        EXPECT_FALSE(r.has("logits"));
        const NpyArray a = r.array("hidden_states");
        EXPECT_EQ(a.shape, (std::vector<size_t>{5, 2, 3}));
        EXPECT_EQ(a.as_float(), all);
        EXPECT_EQ(r.bytes("metadata.json"), "{\"a\": 1}");
    }
}

TEST(Npz, CommitToMissingDirectoryLeavesNothing) {
    pmtest::TempDir d;
    NpzBuilder b;
    b.add_bytes("x.npy", npy_bytes("<i8", {0}, nullptr));
    EXPECT_THROW(b.commit(d / "nope" / "x.npz", false), std::runtime_error);
    EXPECT_TRUE(std::filesystem::is_empty(d.path));
}

TEST(Npz, DamagedFilesGiveClearErrors) {
    pmtest::TempDir d;
    {
        std::ofstream(d / "text.npz") << "this is not a zip file at all, just text\n";
    }
    try {
        NpzReader r(d / "text.npz");
        FAIL() << "no error for a text file";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("not a zip"), std::string::npos) << e.what();
    }
    EXPECT_THROW(NpzReader(d / "missing.npz"), std::runtime_error);
    // Truncated at half.
    std::vector<float> v(4096, 1.5f);
    NpzBuilder b;
    b.add_bytes("hidden_states.npy", npy_bytes("<f4", {4096}, v.data()));
    b.commit(d / "full.npz", false);
    const std::string full = slurp(d / "full.npz");
    std::ofstream(d / "half.npz", std::ios::binary).write(full.data(), std::streamsize(full.size() / 2));
    EXPECT_THROW({ NpzReader r(d / "half.npz"); r.array("hidden_states"); }, std::runtime_error);
}

TEST(AtomicFile, WritesAndReplaces) {
    pmtest::TempDir d;
    write_file_atomic(d / "a.json", "one");
    write_file_atomic(d / "a.json", "two");
    EXPECT_EQ(slurp(d / "a.json"), "two");
    EXPECT_THROW(write_file_atomic(d / "no" / "a.json", "x"), std::runtime_error);
}

}  // namespace
