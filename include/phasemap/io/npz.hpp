// NPY/NPZ files (numpy's formats): streaming writer for arrays whose leading dimension grows
// token by token, an NPZ container builder (libzip) with atomic commit, and a reader for
// NPZ files written by phasemap or by numpy (np.savez / np.savez_compressed).
//
// Owns: each writer owns its open file and temporary parts (removed unless committed); NpzReader owns the
// open archive; NpyArray owns its bytes. Throws: std::runtime_error naming the file and the problem.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "phasemap/io/files.hpp"  // write_file_atomic, the atomic writer

namespace phasemap::io {

namespace fs = std::filesystem;

// A .npy file written incrementally: the header is rewritten with the final leading dimension
// on finish(). Rows are appended as raw little-endian bytes of `dtype` (e.g. "<f4", "<i8").
class NpyStreamWriter {
public:
    NpyStreamWriter(const fs::path& path, std::string dtype, std::vector<size_t> trailing_shape);
    ~NpyStreamWriter();
    NpyStreamWriter(const NpyStreamWriter&) = delete;
    NpyStreamWriter& operator=(const NpyStreamWriter&) = delete;
    void append(const void* data, size_t n_rows);  // n_rows × prod(trailing) elements
    void finish();                                 // writes the final header, closes the file
    size_t rows() const { return rows_; }
    const fs::path& path() const { return path_; }

private:
    void write_header();
    fs::path path_;
    std::string dtype_;
    std::vector<size_t> trailing_;
    size_t item_size_ = 0, row_bytes_ = 0, rows_ = 0;
    std::FILE* f_ = nullptr;
};

// Serialises a complete in-memory array to .npy bytes.
std::string npy_bytes(const std::string& dtype, const std::vector<size_t>& shape, const void* data);

// Collects members, then writes the NPZ atomically (temporary file in the target directory,
// then rename). Nothing is left at `out` if commit() fails or is never called.
class NpzBuilder {
public:
    void add_file(const std::string& member, const fs::path& file);   // e.g. "hidden_states.npy"
    void add_bytes(const std::string& member, std::string bytes);
    void commit(const fs::path& out, bool compress) const;

private:
    struct Member { std::string name; fs::path file; std::string bytes; bool from_file; };
    std::vector<Member> members_;
};

// An array read from a .npy member, converted to a contiguous little-endian buffer.
struct NpyArray {
    std::string dtype;              // as stored, e.g. "<f4", "<f2", "<i8"
    std::vector<size_t> shape;
    std::vector<unsigned char> data;
    size_t size() const;            // number of elements
    std::vector<float> as_float() const;      // f2/f4/f8 → float32 (throws for other dtypes)
    std::vector<int64_t> as_int64() const;    // i1..i8/u1..u8 → int64 (throws for other dtypes)
};

NpyArray parse_npy(const std::string& bytes, const std::string& what);

// The largest NPZ member NpzReader reads into memory (8 GiB; PHASEMAP_MAX_MEMBER_MB overrides).
uint64_t max_member_bytes();

class NpzReader {
public:
    explicit NpzReader(const fs::path& path);  // throws with a clear message (missing, not a zip, truncated)
    ~NpzReader();
    NpzReader(const NpzReader&) = delete;
    NpzReader& operator=(const NpzReader&) = delete;
    std::vector<std::string> members() const;
    bool has(const std::string& key) const;            // key without ".npy", or a full member name
    NpyArray array(const std::string& key) const;      // reads key + ".npy"
    std::string bytes(const std::string& member) const;

private:
    std::string read_member(const std::string& member) const;
    fs::path path_;
    void* zip_ = nullptr;
};

}  // namespace phasemap::io
